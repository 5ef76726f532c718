"""Quarantine records: what the features job could not use, kept with the reason, nothing lost.

A record on rdv.quarantine holds the raw message untouched, the first rule it broke, where it came
from (topic, partition, offset) and when it was quarantined. The Delta table `quarantine` holds
the same, one row per record, for a user to count by reason and to fix and replay
(`rdv quarantine replay`).
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType, TimestampType

QUARANTINE_RECORD = StructType(
    [
        StructField("reason", StringType()),  # the rule broken, e.g. below_min:amount (docs/data-quality.md)
        StructField("raw", StringType()),  # the message as it arrived on rdv.raw
        StructField("source_topic", StringType()),
        StructField("source_partition", IntegerType()),
        StructField("source_offset", LongType()),
        StructField("quarantined_at", TimestampType()),
    ]
)


def quarantine_rows(messages: DataFrame) -> DataFrame:
    """rdv.quarantine messages as rows of the Delta table `quarantine`, partitioned by the day
    they were quarantined (a record may have no usable event time)."""
    parsed = messages.select(F.from_json(F.col("value").cast("string"), QUARANTINE_RECORD).alias("q"))
    return parsed.select("q.*", F.to_date("q.quarantined_at").alias("quarantine_date"))
