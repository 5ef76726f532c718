"""The recording side of the pipeline in one Spark application: the decoy (archive and data
quality) and the recorder (results, scores, quarantine, labels).

`rdv up` runs it beside the latency path's jobs (one application, jobs/pipeline.py, or one
spark-submit each with --separate) at a lower CPU priority
(`supervisor.recording_nice`): the kernel then gives the answers the cores first, whatever Spark's
scheduler pools do inside one application, and a recording query that fails or falls behind never
stops an answer. A query that fails is started again on its own, after a backoff, while the others
run on (rdv/jobrun.py, QueryKeeper); its topics keep every record until it catches up.

Usage:
    spark-submit --packages <see README> jobs/recording.py --conf conf
"""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from jobs import decoy, record
from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job

BUILDERS = {decoy.QUERY: decoy.build, decoy.QUALITY_QUERY: decoy.build_quality, record.QUERY: record.build}
QUERIES = tuple(BUILDERS)
APP = "rdv-recording"  # the Spark application's name


def build_all(spark: SparkSession, config: PipelineConfig) -> list[StreamingQuery]:
    return [build(spark, config) for build in BUILDERS.values()]


def restart(spark: SparkSession, config: PipelineConfig, name: str) -> StreamingQuery:
    """One of the job's queries, started again after it failed."""
    return BUILDERS[name](spark, config)


def parser() -> argparse.ArgumentParser:
    return argument_parser("Run the decoy and the recorder in one Spark application.")


def main(argv: list[str] | None = None) -> None:
    run_job(APP, parser(), lambda spark, config, args: build_all(spark, config), argv, restart=restart)


if __name__ == "__main__":
    main()
