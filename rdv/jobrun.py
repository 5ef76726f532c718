"""What every job's entry point shares: arguments, config, session, progress files, waiting."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from pyspark.errors import StreamingQueryException
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


# The latency path's queries (features, models, rendezvous) run in sessions with these settings.
# A stateful query whose watermark moved runs one more micro-batch without data, to evict state
# and emit what the watermark released: the features job's deduplication moved it every
# micro-batch, so every one was planned and run twice. Without them, that waits for the next
# micro-batch with data, which heartbeats provide while a request waits (rdv/heartbeat.py); a
# replay of the topics into a fresh checkpoint (jobs.decide.decisions) keeps Spark's default.
# Adaptive execution re-plans each stage of a micro-batch's own jobs (foreachBatch) after the one
# before it: for micro-batches of tens to thousands of rows, planning costs, nothing gains.
LATENCY_PATH_SETTINGS = {
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
    "spark.sql.adaptive.enabled": "false",
}


def run_job(app_name: str, parser: argparse.ArgumentParser, build: Build, argv: list[str] | None = None,
            progress_history: bool = False, latency_path: bool = False) -> None:
    """Parse, load the config once, build the session and the queries, then wait for them, keeping
    their progress on disk (rdv/progress.py; every report too with progress_history). The
    latency path's jobs get LATENCY_PATH_SETTINGS."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.conf, args.profile)
    except ConfigError as error:
        parser.exit(2, f"{app_name}: {error}\n")
    spark = build_session(config, app_name)
    for key, value in (LATENCY_PATH_SETTINGS if latency_path else {}).items():
        spark.conf.set(key, value)
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
        _wait(spark, queries, progress, stopping)
        failed = next(((q.name, str(q.exception())) for q in queries if q.exception() is not None), None)
    except Exception:
        log.exception("lost its Spark driver")
        _end_now(1)
    log.info("stopped")
    if failed is not None:
        name, error = failed
        _end_now(1, f"{app_name}: query {name} failed: {error}" + _hint(error, config.checkpoint(name)))


def _wait(spark: SparkSession, queries: list[StreamingQuery], progress: ProgressFiles,
          stopping: threading.Event) -> None:
    """Until SIGTERM or a query ends; then stop every query, the failed one's error kept."""
    try:
        while not stopping.is_set() and all(q.isActive for q in queries):
            try:
                spark.streams.awaitAnyTermination(1)
            except StreamingQueryException:
                break
            spark.streams.resetTerminated()
            progress.update(queries)
    finally:
        for query in queries:
            query.stop()
        progress.stopped(queries)


def _end_now(code: int, message: str | None = None) -> NoReturn:
    """End the process without joining its threads or running atexit handlers. Once the driver's JVM
    is gone or half shut down, a thread still waiting on it keeps the interpreter from exiting: in a
    CI run a job outlived its JVM's failure by minutes, and the supervisor starts again only a job
    that has exited. The supervisor then kills the job's process group, so a JVM still there goes
    too; without a supervisor, the JVM this process started sees its stdin close and exits."""
    if message:
        print(message, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _hint(error: str, checkpoint: str) -> str:
    """What to do about a failure whose cause the user cannot guess from Spark's message."""
    if "SCHEMA_NOT_COMPATIBLE" in error:
        return (f"\n{checkpoint} holds the state of an earlier version of this query, whose records had "
                "other fields. Start the query afresh by removing that checkpoint directory: it re-reads "
                "its topics from the earliest offset still kept.")
    if "have been deleted" in error and "Partitions" in error:
        return (f"\n{checkpoint} holds the offsets of topics this query no longer reads (an earlier version "
                "read others, or a topic was deleted). Start the query afresh by removing that checkpoint "
                "directory (docs/operations.md, \"Resetting a job safely\").")
    return ""
