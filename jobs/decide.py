"""The rendezvous job: one answer per request under its policy.

One query, `rendezvous`: it reads the requests (rdv.features), the heartbeats (rdv.heartbeats)
and the scores (rdv.scores) and publishes one answer per request to rdv.results (see
rendezvous/selection.py for the rules). The recorder job (jobs/record.py) keeps the answers and
every score of every model in Delta, off the latency path.

Usage:
    spark-submit --packages <see README> jobs/decide.py --conf conf
"""

from __future__ import annotations

import argparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import read_topic, to_messages, write_topic
from rendezvous.selection import answers

QUERY = "rendezvous"
QUERIES = (QUERY,)


def decisions(spark: SparkSession, config: PipelineConfig, max_offsets: int | None = None) -> DataFrame:
    """The result records of every request on rdv.features, from it and rdv.scores: what the
    `rendezvous` query publishes, and what a replay of the topics into a fresh checkpoint
    computes again, byte for byte. max_offsets bounds a micro-batch's records (a benchmark's
    backlog)."""
    topics = config.kafka.topics
    # One source for the three topics: it fixes their offsets together, so a heartbeat, published
    # only after every request before it (rdv/heartbeat.py), never comes without them; and one
    # source holds micro-batches back alike (read_topic's `every`), where two would each start
    # micro-batches of their own.
    messages = read_topic(
        spark,
        config,
        f"{topics.features.name},{topics.heartbeats.name},{topics.scores.name}",
        max_offsets=max_offsets,
        every=config.spark.trigger,
        # A request's feature record and a score from each model (heartbeats are few).
        records_per_request=1 + len(config.models),
    )
    return answers(messages, topics.scores.name, config.timing)


def build(spark: SparkSession, config: PipelineConfig) -> list[StreamingQuery]:
    """The job's queries (QUERIES)."""
    return [write_topic(to_messages(decisions(spark, config)), config, QUERY, topic=config.kafka.topics.results.name)]


APP = "rdv-rendezvous"  # the Spark application's name


def parser() -> argparse.ArgumentParser:
    return argument_parser("Answer every request under its policy.")


def main(argv: list[str] | None = None) -> None:
    run_job(APP, parser(), lambda spark, config, args: build(spark, config), argv, latency_path=True)


if __name__ == "__main__":
    main()
