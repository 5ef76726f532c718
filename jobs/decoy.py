"""The decoy job: archives every feature record into Delta `archive`, exactly as the models saw it.

Usage:
    spark-submit --packages <see README> jobs/decoy.py --conf conf
"""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from models.decoy import archive_rows
from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import read_topic, write_table

QUERY = "decoy"


def build(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    archive = archive_rows(read_topic(spark, config, config.kafka.topics.features.name),
                           config.spec.features_schema())
    return write_table(archive, config, QUERY, "archive")


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Archive every feature record into Delta `archive`.")
    run_job("rdv-decoy", parser, lambda spark, config, args: [build(spark, config)], argv)


if __name__ == "__main__":
    main()
