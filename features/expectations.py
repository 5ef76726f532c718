"""The Great Expectations suite of a feature spec, and the validation of feature records against it.

The suite is generated from the spec's feature checks, so they are written once: the same rules
that quarantine a record on the hot path (in Spark SQL, features/checks.py) are expectations here,
validated off the latency path over what was archived. A batch that meets them all confirms the
hot path did its work; one that does not shows which expectation failed and on how many rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from rdv.feature_spec import FeatureSpec

# Great Expectations would otherwise send usage statistics over the network.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402

SUITE = "rdv-features"

# A row of the Delta table data_quality: one expectation of one validated batch of the archive.
DATA_QUALITY_ROW = StructType(
    [
        StructField("batch_id", LongType()),  # the data-quality query's micro-batch
        StructField("validated_at", TimestampType()),
        StructField("suite", StringType()),  # rdv-features-v<schema_version>
        StructField("rows", LongType()),  # feature records in the batch
        StructField("batch_success", BooleanType()),  # every expectation held
        StructField("expectation", StringType()),  # e.g. expect_column_values_to_be_between
        StructField("column", StringType()),  # the feature
        StructField("success", BooleanType()),
        StructField("unexpected_count", LongType()),  # rows that broke it
        StructField("unexpected_percent", DoubleType()),
        StructField("exception", StringType()),  # why it could not be evaluated, if it could not
        StructField("document", StringType()),  # the GX validation result document of the batch
        StructField("validated_date", DateType()),
    ]
)


def spec_expectations(spec: FeatureSpec) -> list[gxe.Expectation]:
    """The suite's expectations: every feature exists and meets its checks (not_null, min and max,
    allowed, regex)."""
    expectations: list[gxe.Expectation] = []
    for name, feature in spec.features.items():
        checks = feature.checks
        expectations.append(gxe.ExpectColumnToExist(column=name))
        if checks.not_null:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
        if checks.min is not None or checks.max is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=checks.min, max_value=checks.max)
            )
        if checks.allowed is not None:
            expectations.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(checks.allowed)))
        if checks.regex is not None:
            expectations.append(gxe.ExpectColumnValuesToMatchRegex(column=name, regex=checks.regex))
    return expectations


@dataclass(frozen=True)
class Validation:
    """One micro-batch validated: its rows and GX's result document, as a JSON-ready dict."""

    suite: str
    rows: int
    success: bool
    document: dict


class FeatureValidator:
    """Validates DataFrames of features (one column per feature) against the spec's suite, with one
    in-memory GX context for the life of a job."""

    def __init__(self, spec: FeatureSpec):
        context = gx.get_context(mode="ephemeral")
        self.suite = context.suites.add(
            gx.ExpectationSuite(name=f"{SUITE}-v{spec.schema_version}", expectations=spec_expectations(spec))
        )
        asset = context.data_sources.add_spark(name="rdv").add_dataframe_asset(name="feature-records")
        self._batches = asset.add_batch_definition_whole_dataframe("micro-batch")

    def validate(self, features: DataFrame, rows: int) -> Validation:
        result = self._batches.get_batch(batch_parameters={"dataframe": features}).validate(self.suite)
        return Validation(
            suite=self.suite.name, rows=rows, success=bool(result.success), document=result.to_json_dict()
        )


def expectation_rows(validation: Validation) -> list[dict]:
    """One row per expectation of a validation: what it checked, whether it held, on how many rows not."""
    rows = []
    for outcome in validation.document["results"]:
        config, result = outcome["expectation_config"], outcome.get("result") or {}
        rows.append(
            {
                "expectation": config["type"],
                "column": config["kwargs"].get("column"),
                "success": bool(outcome["success"]),
                "unexpected_count": result.get("unexpected_count"),
                "unexpected_percent": result.get("unexpected_percent"),
                "exception": (outcome.get("exception_info") or {}).get("exception_message") or None,
            }
        )
    return rows
