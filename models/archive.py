"""The decoy's archive rows: the feature records it archives, exactly as the models see them (the
decoy is a model that never answers; its job is jobs/decoy.py)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from features.records import feature_record_schema
from rdv.clock import wall_clock


def archive_rows(messages: DataFrame, features: StructType) -> DataFrame:
    """rdv.features messages as archive rows: the record parsed with the features of the spec the
    decoy started with, the message itself (which keeps any feature added since) and its place in
    the topic. Heartbeats are not archived."""
    message = F.col("value").cast("string")
    parsed = messages.withColumn("record", F.from_json(message, feature_record_schema(features)))
    return parsed.where(F.col("record.kind") == "request").select(
        "record.*",
        message.alias("message"),
        "partition",
        "offset",
        wall_clock().alias("archived_at"),
        F.to_date("record.event_time").alias("event_date"),
    )
