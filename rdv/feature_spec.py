"""The feature spec, conf/features.yaml: raw fields, canonical features, their checks and limits.

A user brings their own data set by writing this file, with no code change: the features job parses
raw events with its raw fields, computes its features, and quarantines what breaks its checks or
limits; the model jobs and the Delta tables follow its feature list. It is validated once, on
load, and every error names the file and the field. The feature expressions are Spark SQL;
`check_expressions` analyses them against the raw fields at job start, so a typo fails there and
not at scoring. Spark is imported where a schema or that check needs it: reading the spec, as every
`rdv` command does, does not load it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from rdv.durations import Duration, duration_ms
from rdv.validation import ConfigError, Frozen, Scalar, read_yaml, validated

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

SqlType = Literal["string", "double", "int", "bigint", "boolean", "timestamp", "date"]
_NUMERIC = ("double", "int", "bigint")
# Columns the features job uses while the raw fields are top-level columns; no raw field may use it.
INTERNAL_PREFIX = "_rdv_"
# A field name: usable as a column and in a Spark SQL expression without quoting.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Checks(Frozen):
    """What a valid value looks like. A value that breaks a check sends its record to quarantine,
    with the check and the field as the reason."""

    not_null: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[Scalar, ...] | None = Field(default=None, min_length=1)
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
        return pattern

    @model_validator(mode="after")
    def _ordered(self) -> Checks:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self

    def fit(self, sql_type: str) -> None:
        """Refuse checks that cannot apply to a value of sql_type."""
        if (self.min is not None or self.max is not None) and sql_type not in _NUMERIC:
            raise ValueError(f"min and max apply to numbers, not to {sql_type}")
        if self.regex is not None and sql_type != "string":
            raise ValueError(f"regex applies to strings, not to {sql_type}")


class RawField(Frozen):
    type: SqlType
    required: bool = False
    # Personal data: hash keeps a keyed hash of the value, drop keeps nothing of it.
    personal: Literal["hash", "drop"] | None = None
    checks: Checks = Checks()

    @model_validator(mode="after")
    def _checks_fit(self) -> RawField:
        self.checks.fit(self.type)
        if self.personal == "hash" and self.type != "string":
            raise ValueError(
                f"personal: hash applies to strings (its pseudonym is one), not to {self.type}; use personal: drop"
            )
        return self


class Feature(Frozen):
    expr: str = Field(min_length=1)
    type: Literal["double", "int", "bigint", "boolean", "string"] = "double"
    checks: Checks = Checks()

    @model_validator(mode="after")
    def _checks_fit(self) -> Feature:
        self.checks.fit(self.type)
        return self


class Limits(Frozen):
    """Bounds on a raw record as a whole; a record outside them is quarantined with the reason."""

    # A larger message is quarantined as `too_large` without being parsed.
    max_bytes: int = Field(default=65_536, gt=0)
    # event_time against the record's Kafka timestamp (its arrival at rdv.raw): further ahead is
    # `too_new:event_time`, further behind is `too_old:event_time`. Both are deterministic: a replay
    # of rdv.raw quarantines the same records.
    max_future: Duration = "5 minutes"
    # The rendezvous holds every request at least this long after its event time (rdv.config.Timing).
    max_lateness: Duration = "5 seconds"
    # A request_id seen again within this time of its first good arrival is `duplicate:request_id`;
    # null turns deduplication off (and with it the features job's only state).
    dedup_window: Duration | None = "2 minutes"

    @property
    def max_future_ms(self) -> int:
        return duration_ms(self.max_future)

    @property
    def max_lateness_ms(self) -> int:
        return duration_ms(self.max_lateness)

    @property
    def dedup_window_ms(self) -> int | None:
        return None if self.dedup_window is None else duration_ms(self.dedup_window)


class FeatureSpec(Frozen):
    # The version of the raw records and of the feature records this spec makes. A raw record may
    # say which version it follows (its own `schema_version` field); one not accepted is quarantined.
    schema_version: int = Field(ge=1)
    # The raw versions the features job takes: by default every version up to schema_version, as
    # adding an optional field keeps older producers valid.
    accepted_versions: tuple[int, ...] | None = Field(default=None, min_length=1)
    raw: dict[str, RawField] = Field(min_length=1)
    features: dict[str, Feature] = Field(min_length=1)
    limits: Limits = Limits()
    # The raw field that identifies the data subject (a card, a customer): every record carries it,
    # as its pseudonym when the field is `personal: hash`, so `rdv forget` can find a subject's rows.
    subject: str | None = None

    @field_validator("raw", "features")
    @classmethod
    def _plain_names(cls, fields: dict) -> dict:
        for name in fields:
            if not _NAME.match(name) or name.startswith(INTERNAL_PREFIX):
                raise ValueError(
                    f"{name!r}: a name is a letter then letters, digits or _, and does not start "
                    f"with {INTERNAL_PREFIX!r}"
                )
        return fields

    @model_validator(mode="after")
    def _has_its_keys(self) -> FeatureSpec:
        event_time = self.raw.get("event_time")
        if event_time is None or event_time.type != "timestamp" or not event_time.required:
            raise ValueError(
                "raw.event_time must be declared as {type: timestamp, required: true}: "
                "every decision is made on event time"
            )
        request_id = self.raw.get("request_id")
        if request_id is not None and (request_id.type != "string" or request_id.personal):
            raise ValueError("raw.request_id, when declared, is a string and not personal data: it keys every record")
        if "schema_version" in self.raw:
            raise ValueError(
                "raw.schema_version is reserved: a raw record's version is checked against "
                "schema_version and accepted_versions"
            )
        subject = self.raw.get(self.subject) if self.subject else None
        if self.subject and (subject is None or subject.type != "string" or subject.personal == "drop"):
            raise ValueError(
                f"subject: {self.subject!r} must be a raw field of type string that is not "
                "`personal: drop` (nothing could find a subject's rows by a field that is dropped)"
            )
        if self.accepted_versions is not None and any(v < 1 or v > self.schema_version for v in self.accepted_versions):
            raise ValueError(f"accepted_versions: each must be between 1 and schema_version ({self.schema_version})")
        return self

    @property
    def versions(self) -> tuple[int, ...]:
        """The raw schema versions the features job accepts."""
        return self.accepted_versions or tuple(range(1, self.schema_version + 1))

    def field_types(self) -> dict[str, str]:
        """What a policy rule may test, with its Spark SQL type: the canonical features, then the
        raw fields (a name that is both is the raw field)."""
        types: dict[str, str] = {name: feature.type for name, feature in self.features.items()}
        types.update({name: field.type for name, field in self.raw.items()})
        return types

    def raw_schema(self) -> StructType:
        """The typed raw event, as the feature expressions see it."""
        return _struct({name: f.type for name, f in self.raw.items()})

    def features_schema(self) -> StructType:
        """The features struct of a feature record on rdv.features."""
        return _struct({name: f.type for name, f in self.features.items()})


def _struct(types: dict[str, str]) -> StructType:
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    return StructType([StructField(name, _parse_datatype_string(sql_type)) for name, sql_type in types.items()])


def load_feature_spec(path: Path | str) -> FeatureSpec:
    """Load and validate a feature spec; a ConfigError names the file and the field."""
    path = Path(path)
    return validated(FeatureSpec, read_yaml(path, missing="no such feature spec"), path)


def check_expressions(spark: SparkSession, spec: FeatureSpec, path: Path | str) -> None:
    """Analyse every feature expression against the raw fields; a ConfigError names the feature.

    Analysis only: nothing is computed, so this costs milliseconds at job start.
    """
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    raw = spark.createDataFrame([], spec.raw_schema())
    for name, feature in spec.features.items():
        try:
            _ = raw.select(F.expr(feature.expr).cast(feature.type)).schema  # analysis happens on access
        except (AnalysisException, ParseException) as error:
            first_line = str(error).strip().splitlines()[0]
            raise ConfigError(f"{path}: features.{name}.expr: {first_line}") from None
