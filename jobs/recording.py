"""The recording side of the pipeline in one Spark application: the decoy (archive and data
quality) and the recorder (results, scores, quarantine, labels).

`rdv up` runs it beside the latency path's jobs (one application, jobs/pipeline.py, or one
spark-submit each with --separate) at a lower CPU priority
(`supervisor.recording_nice`): the kernel then gives the answers the cores first, whatever Spark's
scheduler pools do inside one application, and a recording query that fails or falls behind never
stops an answer. Its topics keep every record until it catches up.

Usage:
    spark-submit --packages <see README> jobs/recording.py --conf conf
"""
from __future__ import annotations

import argparse

from jobs import decoy, record
from rdv.jobrun import argument_parser, run_job

QUERIES = (*decoy.QUERIES, *record.QUERIES)
APP = "rdv-recording"  # the Spark application's name


def build_all(spark, config):
    return [*decoy.build_all(spark, config), *record.build_all(spark, config)]


def parser() -> argparse.ArgumentParser:
    return argument_parser("Run the decoy and the recorder in one Spark application.")


def main(argv: list[str] | None = None) -> None:
    run_job(APP, parser(), lambda spark, config, args: build_all(spark, config), argv)


if __name__ == "__main__":
    main()
