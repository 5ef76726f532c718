"""What every job's entry point shares: arguments, config, session, progress files, waiting."""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from rdv import profiles
from rdv.config import ConfigError, PipelineConfig, load_config
from rdv.spark import build_session
from rdv.progress import ProgressFiles

Build = Callable[[SparkSession, PipelineConfig, argparse.Namespace], list[StreamingQuery]]


def argument_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    profiles.add_arguments(parser)
    return parser


def run_job(app_name: str, parser: argparse.ArgumentParser, build: Build, argv: list[str] | None = None,
            progress_history: bool = False) -> None:
    """Parse, load the config once, build the session and the queries, then wait for them, keeping
    their progress on disk (rdv/progress.py; every report too with progress_history)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.conf, args.profile)
    except ConfigError as error:
        parser.exit(2, f"{app_name}: {error}\n")
    spark = build_session(config, app_name)
    run_dir = config.path(config.paths.var) / "run"
    progress = ProgressFiles(run_dir / "progress", run_dir / "progress-log" if progress_history else None)
    queries = build(spark, config, args)
    progress.started(queries)
    log = logging.getLogger(app_name)
    log.info("started %s", ", ".join(q.name for q in queries))
    # `rdv down` sends SIGTERM: finish waiting, then stop the queries between micro-batches.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set() and all(q.isActive for q in queries):
            spark.streams.awaitAnyTermination(1)
            spark.streams.resetTerminated()
            progress.update(queries)
    finally:
        for query in queries:
            query.stop()
        progress.stopped(queries)
        log.info("stopped")
    for query in queries:
        if query.exception() is not None:
            raise SystemExit(f"{app_name}: query {query.name} failed: {query.exception()}"
                             + _hint(str(query.exception()), config.checkpoint(query.name)))


def _hint(error: str, checkpoint: str) -> str:
    """What to do about a failure whose cause the user cannot guess from Spark's message."""
    if "SCHEMA_NOT_COMPATIBLE" in error:
        return (f"\n{checkpoint} holds the state of an earlier version of this query, whose records had "
                "other fields. Start the query afresh by removing that checkpoint directory: it re-reads "
                "its topics from the earliest offset still kept.")
    return ""
