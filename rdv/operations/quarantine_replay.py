"""`rdv quarantine replay`: quarantined records back to their topic, once fixed or once the spec takes them.

A record is fixed where it lies, in the Delta table `quarantine` (a Delta UPDATE of its `raw`
column, from a notebook or Spark SQL); or it needs no fix because the spec changed (a new allowed
value, a wider range). Either way the replay sends the payload as the table holds it back to the
topic it came from, rdv.raw (or rdv.labels, for a label record), where its job checks it again like
any new record: it becomes a feature record (or a label) or is quarantined again, with its reason,
so nothing is lost either way. Label rows quarantined by a backfill from a file have no topic to go
back to: fix the file and load it again. Each replayed row's place is
appended to the Delta table `quarantine_replays`, so a row is never sent twice.

A replayed message keeps the Kafka timestamp of its first arrival, so its event time is judged as
it was then (a replay hours later is not too old for that); the models score it and the decoy
archives it, and the rendezvous answers it only if its deadline has not passed.
"""

from __future__ import annotations

from datetime import date

from delta.tables import DeltaTable
from kafka import KafkaProducer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.quarantine import PLACE, replay_messages, replayable
from rdv.config import PipelineConfig
from rdv.kafka_security import client_settings
from rdv.tables import create_table

REPLAYS_TABLE = "quarantine_replays"


def replay_quarantine(
    spark: SparkSession,
    config: PipelineConfig,
    reasons: list[str] | None = None,
    since: date | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Send the replayable rows (features/quarantine.replayable) to their topics and record them;
    the number sent (or, with dry_run, that would be sent) per reason."""
    quarantine_path, replays_path = config.table("quarantine"), config.table(REPLAYS_TABLE)
    if not DeltaTable.isDeltaTable(spark, quarantine_path):
        return {}
    replayed = spark.read.format("delta").load(replays_path) if DeltaTable.isDeltaTable(spark, replays_path) else None
    # Read once: the rows sent and the rows recorded must be the same, whatever the table does meanwhile.
    topics = (config.kafka.topics.raw.name, config.kafka.topics.labels.name)
    rows = replayable(
        spark.read.format("delta").load(quarantine_path), replayed, reasons, since, topics
    ).localCheckpoint()
    counts = {row["reason"]: row["count"] for row in rows.groupBy("reason").count().collect()}
    if dry_run or not counts:
        return counts
    _send(config, replay_messages(rows))
    places = rows.select(
        *PLACE, "reason", F.current_timestamp().alias("replayed_at"), F.current_date().alias("replay_date")
    )
    create_table(spark, replays_path, places.schema, "replay_date")
    places.write.format("delta").mode("append").save(replays_path)
    return counts


def _send(config: PipelineConfig, messages) -> None:
    producer = KafkaProducer(**client_settings(config), acks="all", linger_ms=20)
    try:
        for message in messages.toLocalIterator():
            producer.send(
                message["topic"],
                key=message["key"] and message["key"].encode(),
                value=message["value"].encode(),
                timestamp_ms=message["timestamp_ms"],
            )
        producer.flush()
    finally:
        producer.close()
