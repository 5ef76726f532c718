"""The features job: raw events on rdv.raw to canonical feature records on rdv.features.

The feature spec, conf/features.yaml, says what a raw event holds and which features it makes. A
raw event that breaks it goes to rdv.quarantine with the reason, never silently away (the recorder
job, jobs/record.py, keeps it in the Delta table `quarantine`). Every record is stamped with its
policy from conf/policy.yaml, which the job re-reads before each micro-batch: a policy edit takes
effect within one trigger, without a restart (rdv/policy.py).

Usage:
    spark-submit --packages <see README> jobs/featurize.py --conf conf
"""

from __future__ import annotations

import argparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from features.personal_key import MissingKey, personal_data_key
from features.transform import check_raw, flag_duplicates, policy_columns, route_columns, with_arrival_marks
from rdv.config import ConfigError, PipelineConfig
from rdv.feature_spec import check_expressions
from rdv.heartbeat import start_heartbeat
from rdv.jobrun import argument_parser, run_job
from rdv.policy import PolicyFile
from rdv.streams import for_each_batch, publish, read_topic

QUERY = "features"
QUERIES = (QUERY,)


def build(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    topics, spec = config.kafka.topics, config.spec
    try:
        check_expressions(spark, spec, config.feature_spec_file)
        key = personal_data_key(spec, config.feature_spec_file)
    except (ValueError, MissingKey) as error:
        raise ConfigError(str(error)) from None
    max_deadline_ms = config.rendezvous.max_deadline_ms
    policy = PolicyFile(config.policy_file, max_deadline_ms, spec.field_types(), config.policy)
    window_ms = spec.limits.dedup_window_ms

    messages = route_columns(topics.features.name, topics.quarantine.name, spec.schema_version)
    # The policy in force and its columns, built again only when the file brings a new version.
    in_force, columns = None, []

    def featurize_batch(batch: DataFrame, batch_id: int) -> None:
        nonlocal in_force, columns
        current = policy.refresh()
        if current is not in_force:
            in_force, columns = current, policy_columns(current, spec, max_deadline_ms)
        publish(flag_duplicates(batch, window_ms).select(*columns).select(*messages), config)

    raw = read_topic(spark, config, topics.raw.name, every=config.spark.trigger)
    stream = with_arrival_marks(check_raw(raw, spec, key), window_ms)
    query = for_each_batch(stream, config, QUERY, featurize_batch)
    # The rendezvous's clock, published once this query has passed every raw event before it.
    start_heartbeat(config, query)
    return query


def build_all(spark: SparkSession, config: PipelineConfig) -> list[StreamingQuery]:
    """The job's queries (QUERIES)."""
    return [build(spark, config)]


APP = "rdv-features"  # the Spark application's name


def parser() -> argparse.ArgumentParser:
    return argument_parser("Raw events to canonical feature records (or quarantine), each with its policy.")


def main(argv: list[str] | None = None) -> None:
    run_job(APP, parser(), lambda spark, config, args: build_all(spark, config), argv, latency_path=True)


if __name__ == "__main__":
    main()
