"""The answering policy: conf/policy.yaml, validated on load and re-read while the features job runs.

The policy is the business's side of the rendezvous: which strategy picks a request's answer, how
long models have (deadline_ms), whom to prefer, and what to answer when no model did. The features
job stamps every request with its policy, resolved from this file (and the raw event's own
overrides), so the rendezvous decides from the record alone and a replay decides the same way
whatever the file says by then. The features job re-reads the file before each micro-batch: an
edit takes effect within one trigger, and an edit that does not validate is refused with the file
and field named while the last good policy stays in force.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rdv.validation import ConfigError, Frozen, Scalar, read_yaml, validated

log = logging.getLogger(__name__)

STRATEGIES = ("preferred", "first", "best", "rules", "split")
Strategy = Literal["preferred", "first", "best", "rules", "split"]
# How `best` ranks in-time scores: confidence = max(score, 1 - score) for probabilities.
CRITERIA = ("confidence", "highest_score", "lowest_score")
Criterion = Literal["confidence", "highest_score", "lowest_score"]
# Comparisons a rule may make on a field.
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in")
_NUMERIC_TYPES = ("double", "int", "bigint")


def _servable(preference: tuple[str, ...]) -> tuple[str, ...]:
    if "canary" in preference or "decoy" in preference:
        raise ValueError("a canary or the decoy is never served: leave them out of the preference")
    return preference


def _check_comparison(field: str, sql_type: str, operator: str, value: object) -> None:
    if operator in ("in", "not_in") and (not isinstance(value, list) or not value):
        raise ValueError(f"{field}.{operator}: expects a non-empty list")
    values = value if isinstance(value, list) else [value]
    for item in values:
        if sql_type in _NUMERIC_TYPES:
            fits = isinstance(item, (int, float)) and not isinstance(item, bool)
        elif sql_type == "boolean":
            fits = isinstance(item, bool)
        else:
            fits = isinstance(item, str)
        if not fits:
            raise ValueError(f"{field}.{operator}: {item!r} does not fit the field's type {sql_type}")
    if operator in ("lt", "le", "gt", "ge") and sql_type not in _NUMERIC_TYPES + ("timestamp",):
        raise ValueError(f"{field}.{operator}: order comparisons need a number, {field} is {sql_type}")


class Rule(Frozen):
    """If every comparison in `when` holds, the request prefers `preference`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    # field -> {operator: value}; all must hold. Operators: eq, ne, lt, le, gt, ge, in, not_in.
    when: dict[str, dict[str, Scalar | list[Scalar]]] = Field(min_length=1)
    preference: tuple[str, ...] = Field(min_length=1)

    @field_validator("preference")
    @classmethod
    def _servable_preference(cls, preference: tuple[str, ...]) -> tuple[str, ...]:
        return _servable(preference)

    @field_validator("when")
    @classmethod
    def _known_comparisons(cls, when: dict, info: ValidationInfo) -> dict:
        # What a rule may test comes from the feature spec (FeatureSpec.field_types), given by load_policy.
        known = (info.context or {}).get("fields")
        if known is None:
            raise ValueError("rules are validated against the feature spec's fields: load the policy with them")
        for field, comparisons in when.items():
            if field not in known:
                raise ValueError(f"unknown field {field!r}; rules may test {', '.join(sorted(known))}")
            if not comparisons:
                raise ValueError(f"{field}: give at least one comparison, e.g. {{eq: ...}}")
            for operator, value in comparisons.items():
                if operator not in OPERATORS:
                    raise ValueError(f"{field}: unknown operator {operator!r}; use one of {', '.join(OPERATORS)}")
                _check_comparison(field, known[field], operator, value)
        return when


class Split(Frozen):
    """Exposure by a hash of the request id: each model or role answers its share of requests."""

    # model or role -> percent of requests it answers first; the shares add up to 100.
    shares: dict[str, float] = Field(min_length=1)
    # Part of the hash: change it to draw a fresh assignment of requests to models.
    salt: str = "rdv"

    @field_validator("shares")
    @classmethod
    def _percentages(cls, shares: dict[str, float]) -> dict[str, float]:
        _servable(tuple(shares))
        if any(share < 0 for share in shares.values()):
            raise ValueError("a share cannot be negative")
        if abs(sum(shares.values()) - 100) > 1e-9:
            raise ValueError(f"the shares add up to {sum(shares.values()):g}, not 100")
        return shares


class Best(Frozen):
    criterion: Criterion = "confidence"


class Policy(Frozen):
    """How a request is answered; every field but rules, split and best may be set per raw event."""

    strategy: Strategy = "preferred"
    # A score is in time when scored_at - event_time <= deadline_ms.
    deadline_ms: int = Field(default=3000, gt=0)
    # Roles or model names, most preferred first.
    preference: tuple[str, ...] = Field(default=("champion", "challenger"), min_length=1)
    # The answer when no model scored the request.
    default_score: float = 0.0
    best: Best = Best()
    # For strategy rules: the first rule that holds picks the preference; none holds: `preference`.
    rules: tuple[Rule, ...] = ()
    # For strategy split.
    split: Split | None = None

    @field_validator("preference")
    @classmethod
    def _servable_preference(cls, preference: tuple[str, ...]) -> tuple[str, ...]:
        return _servable(preference)

    @model_validator(mode="after")
    def _strategy_has_its_settings(self) -> Policy:
        if self.strategy == "rules" and not self.rules:
            raise ValueError("strategy rules needs at least one entry under rules")
        if self.strategy == "split" and self.split is None:
            raise ValueError("strategy split needs split.shares")
        names = [rule.name for rule in self.rules]
        if len(names) != len(set(names)):
            raise ValueError(f"rule names must be unique: {', '.join(names)}")
        return self


def load_policy(path: Path, max_deadline_ms: int, fields: dict[str, str]) -> Policy:
    """Read and validate a policy file; a missing file is the default policy. fields: what a rule
    may test, with its Spark SQL type (FeatureSpec.field_types)."""
    if not path.exists():
        return Policy()
    policy = validated(Policy, read_yaml(path), path, context={"fields": fields})
    if policy.deadline_ms > max_deadline_ms:
        raise ConfigError(
            f"{path}: deadline_ms: {policy.deadline_ms} exceeds rendezvous.max_deadline_ms ({max_deadline_ms}) "
            "of pipeline.yaml"
        )
    return policy


class PolicyFile:
    """The policy in force: re-read when the file changes, the last good one kept when an edit is bad."""

    def __init__(self, path: Path, max_deadline_ms: int, fields: dict[str, str], current: Policy):
        self.path = path
        self.max_deadline_ms = max_deadline_ms
        self.fields = fields
        self.current = current
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def refresh(self) -> Policy:
        stamp = self._stamp()
        if stamp == self._seen:
            return self.current
        self._seen = stamp
        try:
            policy = load_policy(self.path, self.max_deadline_ms, self.fields)
        except ConfigError as error:
            log.error("policy edit refused, the previous policy stays in force:\n%s", error)
            return self.current
        if policy != self.current:
            log.info("policy changed: %s", policy.model_dump_json(exclude_defaults=True))
        self.current = policy
        return policy
