"""The declared checks of a feature spec as Spark SQL: the quarantine reason of each record.

Per-record checks decide quarantine on the hot path, so they are column expressions, one CASE WHEN
per record, never Python per row. A reason names the check and the field, e.g. `below_min:amount`;
the first check a record breaks is its reason, raw fields first, in the order of the spec.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

from rdv.feature_spec import Checks, FeatureSpec


def _broken(checks: Checks, value: Column, field: str, sql_type: str) -> list[tuple[Column, str]]:
    rules: list[tuple[Column, str]] = []
    if checks.not_null:
        rules.append((value.isNull(), f"null:{field}"))
    if sql_type == "double":
        # NaN and infinity pass every range check in Spark (NaN sorts above all numbers), and no
        # model can score them: always refused.
        rules.append((F.isnan(value) | (F.abs(value) == F.lit(float("inf"))), f"not_finite:{field}"))
    if checks.min is not None:
        rules.append((value < F.lit(checks.min), f"below_min:{field}"))
    if checks.max is not None:
        rules.append((value > F.lit(checks.max), f"above_max:{field}"))
    if checks.allowed is not None:
        rules.append((~value.isin(*checks.allowed), f"not_allowed:{field}"))
    if checks.regex is not None:
        rules.append((~value.rlike(checks.regex), f"no_match:{field}"))
    return rules


def check_rules(spec: FeatureSpec, raw: str = "typed", features: str = "features") -> list[tuple[Column, str]]:
    """(broken, reason) per declared check, over the struct columns `raw` (the typed raw fields)
    and `features` (the computed features)."""
    rules = []
    for name, field in spec.raw.items():
        rules += _broken(field.checks, F.col(raw)[name], name, field.type)
    for name, feature in spec.features.items():
        rules += _broken(feature.checks, F.col(features)[name], name, feature.type)
    return rules


def first_broken(rules: Sequence[tuple[Column, Column | str]]) -> Column:
    """The reason of the first rule broken, or null when none is; a rule whose test is null (of a
    null value) is not broken."""
    # One flat CASE WHEN: nested ones make the generated code, and the time to generate it again
    # for every micro-batch, grow with the square of the number of rules.
    reason = None
    for broken, name in rules:
        value = F.lit(name) if isinstance(name, str) else name
        test = F.coalesce(broken, F.lit(False))
        reason = F.when(test, value) if reason is None else reason.when(test, value)
    return F.lit(None).cast("string") if reason is None else reason
