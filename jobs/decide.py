"""The rendezvous job: one answer per request under its policy, and every score of every model kept.

Four queries: `rendezvous` reads the requests (rdv.features) and the scores (rdv.scores) and
publishes one answer per request to rdv.results (see rendezvous/selection.py for the rules);
`results-table` and `scores-table` record rdv.results and rdv.scores in the Delta tables
`results` and `scores`, off the latency path; `labels-table` keeps the ground truth that arrives
on rdv.labels, later, in Delta `labels` (see comparison/labels.py).

Usage:
    spark-submit --packages <see README> jobs/decide.py --conf conf
"""
from __future__ import annotations

import argparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from comparison.labels import check_labels, create_labels_table, latest_per_request, merge_labels, quarantine_records
from features.records import parse_feature_records
from models.scoring import SCORE_RECORD
from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import RECORDING_POOL, for_each_batch, publish, read_topic, to_messages, write_table, write_topic
from rendezvous.selection import answers
from rendezvous.sinks import result_rows, score_rows

QUERIES = ("rendezvous", "results-table", "scores-table", "labels-table")


def decisions(spark: SparkSession, config: PipelineConfig) -> DataFrame:
    """The result records of every request on rdv.features, from it and rdv.scores: what the
    `rendezvous` query publishes, and what a replay of the topics into a fresh checkpoint
    computes again, byte for byte."""
    topics = config.kafka.topics
    # The heartbeats in one source with the requests: a heartbeat is published only after every
    # request before it (rdv/heartbeat.py), and one source fixes both topics' offsets together.
    requests = read_topic(spark, config, f"{topics.features.name},{topics.heartbeats.name}")
    return decide(requests, read_topic(spark, config, topics.scores.name), config)


def decide(feature_messages: DataFrame, score_messages: DataFrame, config: PipelineConfig) -> DataFrame:
    """Result records from the Kafka rows of rdv.features and rdv.heartbeats, and of rdv.scores."""
    # The rendezvous needs a request's context only, never its features; a record of another kind
    # (such as a heartbeat of an older version, without one) is skipped.
    requests = parse_feature_records(feature_messages, features=None).where(F.col("kind").isin("request", "heartbeat"))
    # A score's place on rdv.scores breaks ties: all scores of a request share a partition (keyed
    # by request_id), so the smaller offset arrived first, live and on a replay alike.
    scores = score_messages.select(
        F.from_json(F.col("value").cast("string"), SCORE_RECORD).alias("s"), F.struct("partition", "offset").alias("arrival")
    ).select("s.*", "arrival")
    timing = config.rendezvous
    return answers(requests, scores, timing.max_deadline_ms, timing.grace_ms, timing.transit_ms)


def build_labels(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    """rdv.labels into Delta `labels`, one MERGE per micro-batch (idempotent: a batch run again after
    a failure changes nothing); unusable label records to rdv.quarantine with their reason."""
    topics, path = config.kafka.topics, config.table("labels")
    create_labels_table(spark, path)

    def record(batch: DataFrame, batch_id: int) -> None:
        checked = check_labels(batch).persist()
        try:
            bad = quarantine_records(checked)
            if not bad.isEmpty():
                publish(bad.select(F.to_json(F.struct(*bad.columns)).alias("value")), config, topics.quarantine.name)
            merge_labels(spark, path, latest_per_request(checked))
        finally:
            checked.unpersist()

    return for_each_batch(read_topic(spark, config, topics.labels.name), config, "labels-table", record,
                          trigger=config.spark.labels_trigger, pool=RECORDING_POOL)


def build(spark: SparkSession, config: PipelineConfig) -> list[StreamingQuery]:
    topics = config.kafka.topics
    return [
        write_topic(to_messages(decisions(spark, config)), config, "rendezvous", topic=topics.results.name),
        write_table(result_rows(read_topic(spark, config, topics.results.name)), config, "results-table", "results",
                    key=("request_id",), since="event_time", first="published_at"),
        write_table(score_rows(read_topic(spark, config, topics.scores.name), config.rendezvous.grace_ms), config,
                    "scores-table", "scores", key=("request_id", "model"), since="event_time", first="scored_at"),
        build_labels(spark, config),
    ]


APP = "rdv-rendezvous"  # the Spark application's name


def parser() -> argparse.ArgumentParser:
    return argument_parser("Answer every request under its policy; keep every score and every label.")


def main(argv: list[str] | None = None) -> None:
    run_job(APP, parser(), lambda spark, config, args: build(spark, config), argv)


if __name__ == "__main__":
    main()
