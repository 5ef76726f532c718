"""Quarantine records: what the features job could not use, kept with the reason, nothing lost.

A record on rdv.quarantine holds the raw message untouched, the first rule it broke, where it came
from (topic, partition, offset) and when it was quarantined. The Delta table `quarantine` holds
the same, one row per record, for a user to count by reason and to fix and replay
(`rdv quarantine replay`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

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
        StructField("source_timestamp", TimestampType()),  # its arrival: a replay sends it with this time
        StructField("quarantined_at", TimestampType()),
    ]
)


def quarantine_rows(messages: DataFrame) -> DataFrame:
    """rdv.quarantine messages as rows of the Delta table `quarantine`, partitioned by the day
    they were quarantined (a record may have no usable event time)."""
    parsed = messages.select(F.from_json(F.col("value").cast("string"), QUARANTINE_RECORD).alias("q"))
    return parsed.select("q.*", F.to_date("q.quarantined_at").alias("quarantine_date"))


# Where a quarantine record came from: what a replay records, so that it is never replayed twice.
PLACE = ("source_topic", "source_partition", "source_offset")
# Not replayed unless asked for by name: a duplicate's first arrival was answered already, and a
# replay keeps a record's arrival time, so its event time is judged as it was the first time.
NOT_FIXED_BY_REPLAY = ("duplicate:request_id", "too_new:event_time", "too_old:event_time")


def replayable(
    quarantine: DataFrame,
    replayed: DataFrame | None,
    reasons: list[str] | None = None,
    since: date | None = None,
    topics: Collection[str] | None = None,
) -> DataFrame:
    """The rows of the quarantine table to send back to their topic: those with a reason that is,
    or starts with, one of reasons (any but NOT_FIXED_BY_REPLAY when None), quarantined on or after
    since, that came from one of topics (rows loaded from a file have no topic to go back to), and
    not in replayed (rows of earlier replays, with PLACE)."""
    if reasons:
        wanted = F.lit(False)
        for reason in reasons:
            wanted = wanted | (F.col("reason") == reason) | F.col("reason").startswith(f"{reason}:")
    else:
        wanted = ~F.col("reason").isin(*NOT_FIXED_BY_REPLAY)
    rows = quarantine.where(wanted)
    if since is not None:
        rows = rows.where(F.col("quarantine_date") >= F.lit(since))
    if topics is not None:
        rows = rows.where(F.col("source_topic").isin(*topics))
    if replayed is not None:
        rows = rows.join(replayed.select(*PLACE), list(PLACE), "left_anti")
    return rows


def replay_messages(rows: DataFrame) -> DataFrame:
    """Quarantine rows as messages to the topic they came from (rdv.raw, or rdv.labels for a label):
    the raw payload as it is in the table (fixed there, or as it arrived), keyed by its request id
    when it has one, with the time it first arrived."""
    return rows.select(
        F.col("source_topic").alias("topic"),
        F.get_json_object("raw", "$.request_id").alias("key"),
        F.col("raw").alias("value"),
        F.unix_millis("source_timestamp").alias("timestamp_ms"),
    )
