"""The decoy: a model that never answers and only archives its input, exactly as models see it."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.spec import FEATURE_RECORD


def archive_rows(messages: DataFrame) -> DataFrame:
    """rdv.features messages as archive rows: the parsed record, the message itself and its place
    in the topic. Heartbeats are not archived."""
    message = F.col("value").cast("string")
    parsed = messages.withColumn("record", F.from_json(message, FEATURE_RECORD))
    return parsed.where(F.col("record.kind") == "request").select(
        "record.*",
        message.alias("message"),
        "partition",
        "offset",
        F.current_timestamp().alias("archived_at"),
        F.to_date("record.event_time").alias("event_date"),
    )
