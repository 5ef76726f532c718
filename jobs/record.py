"""The recorder job: what the other jobs publish, into Delta, off the latency path.

One query reads rdv.results, rdv.scores, rdv.quarantine, rdv.labels and rdv.costs and, in each
micro-batch, records each topic's records into its table: `results` (with the service the business
got), `scores` (every score of every model), `quarantine` (every record that could not be used,
with its reason), `labels` (the ground truth, one per request; unusable label records go to
rdv.quarantine) and `costs` (each model job's CPU and requests, models/cost.py). Each table holds
each key once though the topics are written at least once (rdv/tables.py); labels are MERGEd so
that a correction replaces an older label.

One query instead of one per table: each query pays a fixed cost per micro-batch whatever its
rows, and nobody waits for these rows, so they are recorded on the slower table trigger. `rdv up`
runs it with the decoy in the recording application, at a lower CPU priority than the answers
(docs/operations.md).

Usage:
    spark-submit --packages <see README> jobs/record.py --conf conf
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from comparison.labels import check_labels, create_labels_table, latest_per_request, merge_labels, quarantine_records
from features.quarantine import PLACE, quarantine_rows
from models.cost import cost_rows
from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import RECORDING_POOL, for_each_batch, publish, read_topic
from rdv.tables import KeyedTable
from rendezvous.sinks import result_rows, score_rows

QUERY = "record"
QUERIES = (QUERY,)

# How one topic's records of a micro-batch are recorded: (the batch's rows of that topic, batch id).
Recorder = Callable[[DataFrame, int], None]


def _keyed(table: KeyedTable, rows: Callable[[DataFrame], DataFrame]) -> Recorder:
    return lambda messages, batch_id: table.record(rows(messages), batch_id)


def _labels(spark: SparkSession, config: PipelineConfig) -> Recorder:
    """Label records into Delta `labels`, one MERGE per micro-batch (a batch run again changes
    nothing), unusable ones to rdv.quarantine with their reason."""
    path = config.table("labels")
    create_labels_table(spark, path)

    def record(messages: DataFrame, batch_id: int) -> None:
        checked = check_labels(messages).persist()
        try:
            bad = quarantine_records(checked)
            if not bad.isEmpty():
                publish(
                    bad.select(F.to_json(F.struct(*bad.columns)).alias("value")),
                    config,
                    config.kafka.topics.quarantine.name,
                )
            merge_labels(spark, path, latest_per_request(checked))
        finally:
            checked.unpersist()

    return record


def recorders(spark: SparkSession, config: PipelineConfig, messages: DataFrame) -> dict[str, Recorder]:
    """Topic -> how its records are recorded; messages is the query's stream, whose schema every
    table's rows are derived from, so that each table is created before the first batch."""
    topics, grace_ms = config.kafka.topics, config.rendezvous.grace_ms

    def keyed(
        table: str,
        rows: Callable[[DataFrame], DataFrame],
        key: tuple[str, ...],
        since: str,
        first: str,
        partition_by: str = "event_date",
    ) -> Recorder:
        target = KeyedTable.create(spark, config, table, rows(messages).schema, key, since, first, QUERY, partition_by)
        return _keyed(target, rows)

    return {
        topics.results.name: keyed("results", result_rows, ("request_id",), "event_time", "published_at"),
        topics.scores.name: keyed(
            "scores", lambda m: score_rows(m, grace_ms), ("request_id", "model"), "event_time", "scored_at"
        ),
        topics.quarantine.name: keyed(
            "quarantine", quarantine_rows, PLACE, "source_timestamp", "quarantined_at", partition_by="quarantine_date"
        ),
        topics.labels.name: _labels(spark, config),
        topics.costs.name: keyed(
            "costs", cost_rows, ("model", "measured_from"), "measured_from", "measured_to", partition_by="measured_date"
        ),
    }


def build(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    topics = config.kafka.topics
    names = (topics.results.name, topics.scores.name, topics.quarantine.name, topics.labels.name, topics.costs.name)
    messages = read_topic(spark, config, ",".join(names))
    by_topic = recorders(spark, config, messages)

    def record(batch: DataFrame, batch_id: int) -> None:
        batch = batch.persist()
        try:
            present = {row.topic for row in batch.select("topic").distinct().collect()}
            for topic, recorder in by_topic.items():
                if topic in present:
                    recorder(batch.where(F.col("topic") == topic), batch_id)
        finally:
            batch.unpersist()

    return for_each_batch(messages, config, QUERY, record, trigger=config.spark.table_trigger, pool=RECORDING_POOL)


def build_all(spark: SparkSession, config: PipelineConfig) -> list[StreamingQuery]:
    """The job's queries (QUERIES)."""
    return [build(spark, config)]


APP = "rdv-record"  # the Spark application's name


def parser() -> argparse.ArgumentParser:
    return argument_parser("Record results, scores, quarantined records, labels and costs into their Delta tables.")


def main(argv: list[str] | None = None) -> None:
    run_job(APP, parser(), lambda spark, config, args: build_all(spark, config), argv)


if __name__ == "__main__":
    main()
