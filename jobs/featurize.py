"""The features job: raw events on rdv.raw to canonical feature records on rdv.features.

A raw event that cannot be used goes to rdv.quarantine with the reason, never silently away.

Usage:
    spark-submit --packages <see README> jobs/featurize.py --conf conf
"""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from features.transform import parse_raw, route
from rdv.config import PipelineConfig
from rdv.heartbeat import start_heartbeat
from rdv.jobrun import argument_parser, run_job
from rdv.streams import read_topic, write_topic

QUERY = "features"


def build(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    topics = config.kafka.topics
    # One source over both topics: each micro-batch fixes their offsets together (rdv/heartbeat.py).
    raw = read_topic(spark, config, f"{topics.raw.name},{topics.heartbeats.name}")
    requests = parse_raw(raw, config.policy, config.rendezvous.max_deadline_ms)
    messages = route(requests, topics.features.name, topics.quarantine.name, config.features.schema_version,
                     topics.heartbeats.name)
    query = write_topic(messages, config, QUERY)
    start_heartbeat(config, query)
    return query


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Raw events to canonical feature records (and quarantine).")
    run_job("rdv-features", parser, lambda spark, config, args: [build(spark, config)], argv)


if __name__ == "__main__":
    main()
