"""What every job's entry point shares: arguments, config, session, progress files, waiting."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from rdv import profiles
from rdv.config import ConfigError, PipelineConfig, SupervisorConfig, load_config
from rdv.progress import ProgressFiles
from rdv.spark import build_session

Build = Callable[[SparkSession, PipelineConfig, argparse.Namespace], list[StreamingQuery]]
# Starts one query of a job again, by its name.
Restart = Callable[[SparkSession, PipelineConfig, str], StreamingQuery]


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


def run_job(
    app_name: str,
    parser: argparse.ArgumentParser,
    build: Build,
    argv: list[str] | None = None,
    progress_history: bool = False,
    latency_path: bool = False,
    restart: Restart | None = None,
) -> None:
    """Parse, load the config once, build the session and the queries, then wait for them, keeping
    their progress on disk (rdv/progress.py; every report too with progress_history). The
    latency path's jobs get LATENCY_PATH_SETTINGS.

    A query that fails ends the job (the supervisor starts it again), unless the job can restart
    its queries one by one (restart, the recording job's): then the failed query alone is started
    again after a backoff (QueryKeeper) and the others run on."""
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
    keeper = QueryKeeper(spark, config, queries, progress, restart)
    try:
        failed = keeper.run(stopping)
    except Exception:
        log.exception("lost its Spark driver")
        _end_now(1)
    log.info("stopped")
    if failed is not None:
        name, reason = failed
        _end_now(1, f"{app_name}: query {name} failed: {reason}" + _hint(reason, config.checkpoint(name)))


class QueryKeeper:
    """Waits on a job's queries until SIGTERM, keeping their progress files, then stops them.

    Without `restart`, the first query to fail ends the wait. With it, a failed query is started
    again on its own, after the supervisor's backoff (supervisor.backoff, doubled per failure in a
    row up to max_backoff; a run of `healthy_after` clears the count), while the others run on.
    Its progress file says `restarting`, with its error, its failures in a row and when it starts
    again (`rdv status`). It is never given up on: the recording job's queries wait out a table
    they cannot write (a full disk, a permission, an outage of the storage) and then catch up
    from their checkpoints, idempotently (docs/operations.md).
    """

    def __init__(
        self,
        spark: SparkSession,
        config: PipelineConfig,
        queries: list[StreamingQuery],
        progress: ProgressFiles,
        restart: Restart | None = None,
    ):
        self.spark, self.config, self.progress, self.restart = spark, config, progress, restart
        self.live = {query.name: query for query in queries}
        self.settings: SupervisorConfig = config.supervisor
        now = time.monotonic()
        self.started_at = {name: now for name in self.live}
        self.failures: dict[str, int] = {}  # in a row
        self.due: dict[str, float] = {}  # query -> when it starts again (monotonic)
        self.log = logging.getLogger("rdv.jobrun")

    def run(self, stopping: threading.Event) -> tuple[str, str] | None:
        """Wait; return the failed query's name and error that ended the wait, if one did."""
        try:
            while not stopping.is_set():
                try:
                    self.spark.streams.awaitAnyTermination(1)
                except StreamingQueryException:
                    pass
                self.spark.streams.resetTerminated()
                ended = [q for name, q in self.live.items() if name not in self.due and not q.isActive]
                if ended and (self.restart is None or any(q.exception() is None for q in ended)):
                    # A failure ends the job, as does a query stopped from outside.
                    return next(((q.name, str(q.exception())) for q in ended if q.exception() is not None), None)
                now = time.monotonic()
                for query in ended:
                    self._failed(query.name, str(query.exception()), now)
                for name in [n for n, at in self.due.items() if now >= at]:
                    self._start_again(name, now)
                self.progress.update([q for name, q in self.live.items() if name not in self.due])
            return None
        finally:
            for query in self.live.values():
                query.stop()
            self.progress.stopped(list(self.live.values()))  # one that waited to start again: failed

    def _failed(self, name: str, error: str, now: float) -> None:
        failures = self.settings.failures_in_a_row(self.failures.get(name, 0), now - self.started_at[name])
        wait = self.settings.backoff_s(failures)
        self.failures[name], self.due[name] = failures, now + wait
        self.log.error("query %s failed (%d in a row), starting it again in %.0f s: %s", name, failures, wait, error)
        next_start = datetime.now(UTC) + timedelta(seconds=wait)
        self.progress.restarting(name, error, failures, next_start.isoformat(timespec="seconds"))

    def _start_again(self, name: str, now: float) -> None:
        del self.due[name]
        assert self.restart is not None  # a query is due to start again only in a job that restarts them
        try:
            query = self.restart(self.spark, self.config, name)
        except Exception as error:  # its table may still be unwritable: as a failure of the query
            self._failed(name, f"{type(error).__name__}: {error}", now)
            return
        self.live[name], self.started_at[name] = query, now
        self.progress.started([query])
        self.log.info("query %s started again", name)


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
        return (
            f"\n{checkpoint} holds the state of an earlier version of this query, whose records had "
            "other fields. Start the query afresh by removing that checkpoint directory: it re-reads "
            "its topics from the earliest offset still kept."
        )
    if "have been deleted" in error and "Partitions" in error:
        return (
            f"\n{checkpoint} holds the offsets of topics this query no longer reads (an earlier version "
            "read others, or a topic was deleted). Start the query afresh by removing that checkpoint "
            'directory (docs/operations.md, "Resetting a job safely").'
        )
    return ""
