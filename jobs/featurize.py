"""The features job: raw events on rdv.raw to canonical feature records on rdv.features.

A raw event that cannot be used goes to rdv.quarantine with the reason, never silently away.
Every record is stamped with its policy from conf/policy.yaml, which the job re-reads before each
micro-batch: a policy edit takes effect within one trigger, without a restart (rdv/policy.py).

Usage:
    spark-submit --packages <see README> jobs/featurize.py --conf conf
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from features.transform import parse_raw, route
from rdv.config import PipelineConfig
from rdv.heartbeat import start_heartbeat
from rdv.jobrun import argument_parser, run_job
from rdv.policy import PolicyFile
from rdv.streams import for_each_batch, publish, read_topic

QUERY = "features"


def build(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    topics = config.kafka.topics
    policy = PolicyFile(config.policy_file, config.rendezvous.max_deadline_ms, config.policy)

    def featurize_batch(raw: DataFrame, batch_id: int) -> None:
        requests = parse_raw(raw, policy.refresh(), config.rendezvous.max_deadline_ms)
        publish(route(requests, topics.features.name, topics.quarantine.name, config.features.schema_version,
                      topics.heartbeats.name), config)

    # One source over both topics: each micro-batch fixes their offsets together (rdv/heartbeat.py).
    raw = read_topic(spark, config, f"{topics.raw.name},{topics.heartbeats.name}")
    query = for_each_batch(raw, config, QUERY, featurize_batch)
    start_heartbeat(config, query)
    return query


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Raw events to canonical feature records (and quarantine), each with its policy.")
    run_job("rdv-features", parser, lambda spark, config, args: [build(spark, config)], argv)


if __name__ == "__main__":
    main()
