"""Each request's policy as one Spark SQL column: the configured policy (its model, as policy.yaml
holds it, is rdv/policy.py), the raw event's overrides, and the rules or the split compiled to
expressions, so no Python runs per request.

Resolved here, in the features job, the policy travels in the feature record and in every score:
the rendezvous decides from the record alone, and a replay decides as the live run did.

An event's own `preference` is final: rules and the split leave it alone (its `rule` and `arm`
stay null). Otherwise `rules` take the preference of the first rule that holds (`rule` names it;
when none holds, the configured preference, and `rule` is null), and `split` puts the request's
`arm`, chosen by a hash of the request id, before the rest of the configured preference.
"""

from __future__ import annotations

import operator
from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from rdv.policy import CRITERIA, STRATEGIES, Policy, Rule, Split

# What a raw event may override.
OVERRIDES = ("strategy", "deadline_ms", "preference", "default_score", "criterion")
# The override object read with every field as text, so a wrong type is a reason, not a silent null.
_OVERRIDES_AS_TEXT = StructType([StructField(name, StringType()) for name in OVERRIDES])
# The split hashes each request into one of this many buckets: shares have two decimals.
SPLIT_BUCKETS = 10_000
_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def parse_overrides(policy_text: Column) -> Column:
    """The raw event's "policy" object (JSON text) as a struct of typed overrides; a field that
    is absent, or of the wrong type, is null (override_problems tells the two apart)."""
    text = F.from_json(policy_text, _OVERRIDES_AS_TEXT)
    return F.struct(
        text.strategy.alias("strategy"),
        text.deadline_ms.try_cast("int").alias("deadline_ms"),
        F.from_json(text.preference, ArrayType(StringType())).alias("preference"),
        text.default_score.try_cast("double").alias("default_score"),
        text.criterion.alias("criterion"),
    )


def override_problems(policy_text: Column, overrides: Column, policy: Policy) -> list[tuple[Column, Column | str]]:
    """(condition, quarantine reason) for each way an event's policy object can be unusable, in
    the order they are checked; the reason names the field."""
    text = F.from_json(policy_text, _OVERRIDES_AS_TEXT)
    unknown = F.array_except(F.json_object_keys(policy_text), F.array(*[F.lit(n) for n in OVERRIDES]))
    strategies = [s for s in STRATEGIES if (s != "rules" or policy.rules) and (s != "split" or policy.split)]
    return [
        (policy_text.isNotNull() & ~F.ltrim(policy_text).startswith("{"), "bad_policy"),
        (F.size(unknown) > 0, F.concat(F.lit("bad_policy:"), unknown[0])),
        (text.strategy.isNotNull() & ~text.strategy.isin(*strategies), "bad_policy:strategy"),
        (text.deadline_ms.isNotNull() & ~F.coalesce(overrides.deadline_ms > 0, F.lit(False)), "bad_policy:deadline_ms"),
        (
            text.preference.isNotNull() & ~F.coalesce(F.size(overrides.preference) > 0, F.lit(False)),
            "bad_policy:preference",
        ),
        (text.default_score.isNotNull() & overrides.default_score.isNull(), "bad_policy:default_score"),
        (text.criterion.isNotNull() & ~text.criterion.isin(*CRITERIA), "bad_policy:criterion"),
    ]


def rule_condition(rule: Rule, raw_names: set[str]) -> Column:
    """The rule as one Spark SQL predicate: every comparison must hold (a null value holds none).
    A name is the typed raw field if the spec has a raw field of that name, else the feature."""
    parts = []
    for name, comparisons in rule.when.items():
        column = F.col(f"typed.{name}") if name in raw_names else F.col(f"features.{name}")
        for op, value in comparisons.items():
            if op in ("in", "not_in"):  # a list, as the policy's validation makes sure
                listed = column.isin(*(value if isinstance(value, list) else [value]))
                parts.append(listed if op == "in" else ~listed)
            else:
                parts.append(_COMPARE[op](column, F.lit(value)))
    return reduce(operator.and_, parts)


def _first_rule(rules: tuple[Rule, ...], raw_names: set[str], value) -> Column:
    """CASE WHEN <rule 1> THEN value(rule 1) WHEN <rule 2> ... END (null when none holds)."""
    case = F.when(rule_condition(rules[0], raw_names), value(rules[0]))
    for rule in rules[1:]:
        case = case.when(rule_condition(rule, raw_names), value(rule))
    return case


def split_arm(split: Split, request_id: Column) -> Column:
    """The model or role a request is exposed to: its hash bucket falls in that arm's share."""
    bucket = F.pmod(F.xxhash64(F.lit(split.salt), request_id), F.lit(SPLIT_BUCKETS))
    arms = [(arm, share) for arm, share in split.shares.items() if share > 0]
    case, upper = None, 0.0
    for arm, share in arms[:-1]:
        upper += share * SPLIT_BUCKETS / 100
        condition = bucket < F.lit(round(upper))
        case = F.when(condition, F.lit(arm)) if case is None else case.when(condition, F.lit(arm))
    last = F.lit(arms[-1][0])
    return last if case is None else case.otherwise(last)


def _strings(values) -> Column:
    return F.array(*[F.lit(v) for v in values])


def request_policy(
    policy: Policy, raw_names: set[str], max_deadline_ms: int, overrides: Column, request_id: Column
) -> Column:
    """The policy record of a request (features.records.POLICY_STRUCT), from the configured policy
    and the event's overrides; rules read the columns `typed` (raw fields, named in raw_names) and
    `features`."""
    strategy = F.coalesce(overrides.strategy, F.lit(policy.strategy))
    own = overrides.preference
    configured = _strings(policy.preference)
    none = F.lit(None).cast("string")
    rule = (
        F.when(own.isNull() & (strategy == "rules"), _first_rule(policy.rules, raw_names, lambda r: F.lit(r.name)))
        if policy.rules
        else none
    )
    rule_preference = _first_rule(policy.rules, raw_names, lambda r: _strings(r.preference)) if policy.rules else None
    arm = F.when(own.isNull() & (strategy == "split"), split_arm(policy.split, request_id)) if policy.split else none
    preference = F.when(own.isNotNull(), own)
    if rule_preference is not None:
        preference = preference.when(rule.isNotNull(), rule_preference)
    preference = preference.when(arm.isNotNull(), F.concat(F.array(arm), F.filter(configured, lambda p: p != arm)))
    return F.struct(
        strategy.alias("strategy"),
        F.least(F.coalesce(overrides.deadline_ms, F.lit(policy.deadline_ms)), F.lit(max_deadline_ms)).alias(
            "deadline_ms"
        ),
        preference.otherwise(configured).alias("preference"),
        F.coalesce(overrides.default_score, F.lit(policy.default_score)).alias("default_score"),
        F.when(strategy == "best", F.coalesce(overrides.criterion, F.lit(policy.best.criterion))).alias("criterion"),
        rule.alias("rule"),
        arm.alias("arm"),
    )
