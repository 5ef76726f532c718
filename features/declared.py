"""The declared feature spec, conf/features.yaml: raw fields, canonical features and their checks.

A user brings their own data set by writing this file: the features job parses raw events with its
raw fields, computes its features, and quarantines what breaks its checks; the model jobs and the
Delta tables follow its feature list. It is validated once, on load, and every error names the
file and the field. The feature expressions are Spark SQL; `check_expressions` analyses them
against the raw fields with a session, at job start, so a typo fails there and not at scoring.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType, _parse_datatype_string

SqlType = Literal["string", "double", "int", "bigint", "boolean", "timestamp", "date"]
_NUMERIC = ("double", "int", "bigint")
Scalar = Union[bool, int, float, str]


class SpecError(ValueError):
    """A feature spec that cannot be used; the message names the file and the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Checks(_Frozen):
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


class RawField(_Frozen):
    type: SqlType
    required: bool = False
    # Personal data: hash keeps a keyed hash of the value, drop keeps nothing of it.
    personal: Literal["hash", "drop"] | None = None
    checks: Checks = Checks()

    @model_validator(mode="after")
    def _checks_fit(self) -> RawField:
        self.checks.fit(self.type)
        return self


class Feature(_Frozen):
    expr: str = Field(min_length=1)
    type: Literal["double", "int", "bigint", "boolean", "string"] = "double"
    checks: Checks = Checks()

    @model_validator(mode="after")
    def _checks_fit(self) -> Feature:
        self.checks.fit(self.type)
        return self


class FeatureSpec(_Frozen):
    schema_version: int = Field(ge=1)
    raw: dict[str, RawField] = Field(min_length=1)
    features: dict[str, Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_its_keys(self) -> FeatureSpec:
        event_time = self.raw.get("event_time")
        if event_time is None or event_time.type != "timestamp" or not event_time.required:
            raise ValueError("raw.event_time must be declared as {type: timestamp, required: true}: "
                             "every decision is made on event time")
        request_id = self.raw.get("request_id")
        if request_id is not None and (request_id.type != "string" or request_id.personal):
            raise ValueError("raw.request_id, when declared, is a string and not personal data: "
                             "it keys every record")
        return self

    def raw_schema(self) -> StructType:
        """The typed raw event, as the feature expressions see it."""
        return StructType([StructField(name, _parse_datatype_string(f.type)) for name, f in self.raw.items()])

    def features_schema(self) -> StructType:
        """The features struct of a feature record on rdv.features."""
        return StructType([StructField(name, _parse_datatype_string(f.type)) for name, f in self.features.items()])


def load_feature_spec(path: Path | str) -> FeatureSpec:
    """Load and validate a feature spec; a SpecError names the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such feature spec") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with schema_version, raw and features")
    try:
        return FeatureSpec(**data)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
            message = "unknown field (check the spelling)" if problem["type"] == "extra_forbidden" else problem["msg"]
            lines.append(f"{path}: {field}: {message}")
        raise SpecError("\n".join(lines)) from None


def check_expressions(spark: SparkSession, spec: FeatureSpec, path: Path | str) -> None:
    """Analyse every feature expression against the raw fields; a SpecError names the feature.

    Analysis only: nothing is computed, so this costs milliseconds at job start.
    """
    raw = spark.createDataFrame([], spec.raw_schema())
    for name, feature in spec.features.items():
        try:
            raw.select(F.expr(feature.expr).cast(feature.type)).schema
        except (AnalysisException, ParseException) as error:
            first_line = str(error).strip().splitlines()[0]
            raise SpecError(f"{path}: features.{name}.expr: {first_line}") from None
