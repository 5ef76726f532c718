"""The records on rdv.features: a canonical feature record per request, and heartbeats.

The features inside a record follow the feature spec (rdv/feature_spec.py); the rest is fixed, so the
rendezvous reads every record without knowing the spec. A reader parses the features with the spec
it started with: a feature added later is ignored by it until it restarts, and a feature it needs
that the spec no longer has stops it at start (models/scoring.py), never at scoring.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# A request's policy, resolved by the features job (features/policy_columns.py) and copied into every score.
POLICY_STRUCT = StructType(
    [
        StructField("strategy", StringType()),  # preferred, first, best, rules or split
        StructField("deadline_ms", IntegerType()),  # a score is in time when scored_at - event_time <= deadline_ms
        StructField("preference", ArrayType(StringType())),  # roles or model names, most preferred first
        StructField("default_score", DoubleType()),  # the answer when no model scored the request
        StructField("criterion", StringType()),  # strategy best: how scores are ranked; null otherwise
        StructField("rule", StringType()),  # strategy rules: the rule that picked the preference, if any
        StructField("arm", StringType()),  # strategy split: the model or role the request is exposed to
    ]
)


def feature_record_schema(features: StructType | None) -> StructType:
    """One message on rdv.features. kind is 'request' for a feature record and 'heartbeat' for the
    records that keep event time moving when traffic stops (they carry only event_time).
    schema_version is the spec's that made the record; subject, its data subject (the spec's
    `subject` field, a pseudonym when that is personal data), or null. Without `features` (None),
    the schema of a reader that needs only the request's context, such as the rendezvous."""
    fields = [
        StructField("schema_version", IntegerType()),
        StructField("kind", StringType()),
        StructField("request_id", StringType()),
        StructField("subject", StringType()),
        StructField("event_time", TimestampType()),
    ]
    if features is not None:
        fields.append(StructField("features", features))
    fields.append(StructField("policy", POLICY_STRUCT))
    return StructType(fields)


def parse_feature_records(messages: DataFrame, features: StructType | None) -> DataFrame:
    """rdv.features messages (a value column) as typed records, heartbeats included."""
    schema = feature_record_schema(features)
    return messages.select(F.from_json(F.col("value").cast("string"), schema).alias("r")).select("r.*")
