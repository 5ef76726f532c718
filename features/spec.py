"""The raw event contract and the canonical feature record, declared once.

Producers write raw events to rdv.raw; the features job turns each into one canonical feature
record on rdv.features, which every model job, the decoy and the rendezvous read with the
schemas below. Bump SCHEMA_VERSION when the canonical features change.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RawField:
    """A field of a raw event: its Spark SQL type and whether an event without it is quarantined."""

    name: str
    sql_type: str
    required: bool


RAW_FIELDS: tuple[RawField, ...] = (
    RawField("request_id", "string", required=False),
    RawField("event_time", "timestamp", required=True),
    RawField("card_id", "string", required=True),
    RawField("amount", "double", required=True),
    RawField("merchant_category", "string", required=True),
    RawField("country", "string", required=True),
    RawField("home_country", "string", required=True),
    RawField("distance_km", "double", required=True),
    RawField("card_present", "boolean", required=True),
    RawField("txn_count_24h", "int", required=True),
    RawField("avg_amount_30d", "double", required=True),
)

# Merchant categories with their prior fraud risk; anything else counts as 'other'.
CATEGORY_RISK = {
    "grocery": 0.05,
    "fuel": 0.15,
    "restaurant": 0.1,
    "electronics": 0.6,
    "travel": 0.5,
    "online": 0.7,
    "other": 0.3,
}

_category_cases = " ".join(f"WHEN '{name}' THEN {risk}" for name, risk in CATEGORY_RISK.items())

# Canonical feature name -> Spark SQL expression over the typed raw fields. All are doubles,
# the type every model job receives.
FEATURES: dict[str, str] = {
    "log_amount": "ln(1 + greatest(amount, 0))",
    "amount_ratio": "amount / greatest(avg_amount_30d, 1.0)",
    "distance_km": "distance_km",
    "is_foreign": "CAST(country <> home_country AS DOUBLE)",
    "is_night": "CAST(hour(event_time) < 6 AS DOUBLE)",
    "card_present": "CAST(card_present AS DOUBLE)",
    "txn_count_24h": "CAST(txn_count_24h AS DOUBLE)",
    "category_risk": f"CASE lower(merchant_category) {_category_cases} ELSE {CATEGORY_RISK['other']} END",
}

FEATURES_STRUCT = StructType([StructField(name, DoubleType()) for name in FEATURES])

# A request's policy, resolved by the features job (features/policy.py) and copied into every score.
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

# One message on rdv.features. kind is 'request' for a feature record and 'heartbeat' for the
# records that keep event time moving when traffic stops (they carry only event_time).
FEATURE_RECORD = StructType(
    [
        StructField("schema_version", IntegerType()),
        StructField("kind", StringType()),
        StructField("request_id", StringType()),
        StructField("event_time", TimestampType()),
        StructField("features", FEATURES_STRUCT),
        StructField("policy", POLICY_STRUCT),
    ]
)
