"""The compare job: the comparison tables (comparison/compare.py), once or on a schedule.

A batch job, not a streaming one: it recomputes the tables from the Delta tables the pipeline
writes, because late labels change old windows. Run it from a scheduler (cron, Airflow, a
Databricks job) or let it repeat itself with --every.

Usage:
    spark-submit --packages <see README> jobs/compare.py --conf conf [--every "15 minutes"]
"""

from __future__ import annotations

import argparse
import logging
import time

from pyspark.sql import SparkSession

from comparison.compare import compare
from comparison.report import read_tables, summary
from rdv.config import ConfigError, PipelineConfig, load_config
from rdv.durations import duration_ms
from rdv.jobrun import argument_parser
from rdv.spark import build_session


def compare_and_summarize(spark: SparkSession, config: PipelineConfig) -> str:
    """Recompute the comparison tables; the terminal summary of what they now hold."""
    compare(spark, config)
    return summary(read_tables(spark, config), config)


APP = "rdv-compare"  # the Spark application's name


def parser() -> argparse.ArgumentParser:
    job = argument_parser("Recompute the comparison tables from scores, results, labels and archive.")
    job.add_argument("--every", help="repeat every this long, e.g. '15 minutes' (default: once)")
    return job


def main(argv: list[str] | None = None) -> None:
    job = parser()
    args = job.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.conf, args.profile)
        pause_s = duration_ms(args.every) / 1000 if args.every else None
    except (ConfigError, ValueError) as error:
        job.exit(2, f"{APP}: {error}\n")
    spark = build_session(config, APP)
    try:
        while True:
            started = time.monotonic()
            print(compare_and_summarize(spark, config), flush=True)
            if pause_s is None:
                return
            time.sleep(max(0.0, pause_s - (time.monotonic() - started)))
    except ConfigError as error:
        job.exit(2, f"{APP}: {error}\n")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
