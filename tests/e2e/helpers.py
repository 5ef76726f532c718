"""Driving a running pipeline from an end-to-end test: send a batch of requests, wait for them."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from jobs.decide import decisions
from rdv.config import PipelineConfig
from rdv.demo.replay import replay
from rdv.demo.summary import RunCounts, count_run, run_rows
from rdv.kafka_security import client_settings
from rdv.operations.runner import check_healthy
from rdv.streams import to_messages

# A deadline for tests that assert every answer is the preferred model's. On two shared cores a
# score's event-to-result time is mostly the micro-batches' fixed cost, and under a loaded CI run
# it has gone past 15 s; a request answered early (its preferred score in time) never waits for it.
ALWAYS_IN_TIME_MS = 60_000
# Between two looks at the tables, whose recorders take a micro-batch every 5 s in a test's
# pipeline (tests/helpers.py, TEST_TABLE_TRIGGER).
POLL_S = 5


def wait_while_progressing(probe, done, timeout_s: float, describe, check=None) -> None:
    """Poll probe() every POLL_S until done(value) holds, or fail with describe(value) once
    timeout_s passed without the value changing (a loaded machine is slow, a stuck pipeline makes
    no progress). check(), when given, runs at each look and may fail it at once."""
    deadline, last = time.monotonic() + timeout_s, None
    while not done(value := probe()):
        if check is not None:
            check()
        if value != last:
            deadline, last = time.monotonic() + timeout_s, value
        assert time.monotonic() < deadline, describe(value)
        time.sleep(POLL_S)


def counts_so_far(spark, config: PipelineConfig, prefix: str, events: int) -> RunCounts:
    """What the tables hold of the requests whose ids start with prefix, reading the results table
    alone until every request is answered (an answer is the last record of a request's way).
    Each table read scans that table's files in the tests' JVM, which shares the two cores with
    the pipeline: four tables every few seconds took a third of a core."""
    results = run_rows(spark, config, "results", prefix)
    answered = 0 if results is None else results.select("request_id").distinct().count()
    return RunCounts(answered=answered) if answered < events else count_run(spark, config, prefix)


def send_and_wait(
    spark,
    config: PipelineConfig,
    prefix: str,
    events: int,
    models: list[str],
    rate: float = 10,
    seed: int = 7,
    timeout_s: float = 300,
) -> None:
    """Replay events whose request ids start with prefix, then wait_for_requests."""
    replay(client_settings(config), config.kafka.topics.raw.name, events, rate, seed=seed, id_prefix=prefix)
    wait_for_requests(spark, config, prefix, events, models, timeout_s)


def wait_for_requests(
    spark,
    config: PipelineConfig,
    prefix: str,
    events: int,
    models: list[str],
    timeout_s: float = 300,
    healthy: bool = True,
) -> None:
    """Wait until every request whose id starts with prefix is archived, answered and scored by
    every named model, or fail with what is missing once timeout_s passed without a new record (a
    loaded machine is slow, a stuck pipeline makes no progress). With healthy, a failed query fails
    this at once; without, it is the supervisor's to start again."""
    wait_while_progressing(
        lambda: counts_so_far(spark, config, prefix, events),
        lambda counts: counts.complete(events, models),
        timeout_s,
        lambda counts: f"{prefix}: no new record for {timeout_s:.0f} s: {counts}",
        check=(lambda: check_healthy(config)) if healthy else None,
    )


def wait_for_table_rows(spark, config: PipelineConfig, table: str, expected: int, timeout_s: float = 300) -> None:
    """Wait until a Delta table holds expected rows, or fail once timeout_s passed without a new one."""
    path = config.table(table)
    wait_while_progressing(
        lambda: spark.read.format("delta").load(path).count(),
        lambda rows: rows >= expected,
        timeout_s,
        lambda rows: f"{table}: {rows} of {expected} rows, none new for {timeout_s:.0f} s",
    )


def warm_up(spark, config: PipelineConfig, models: list[str]) -> None:
    """A first batch of requests through every job: the first micro-batches start Python workers
    and load models (tens of seconds on two cores), which is not what the tests measure."""
    send_and_wait(spark, config, "warm-up", 10, models, seed=1)


def table_rows(spark, config: PipelineConfig, table: str, prefix: str) -> pd.DataFrame:
    return run_rows(spark, config, table, prefix).toPandas()


def replay_decisions(
    spark, config: PipelineConfig, checkpoint: Path, keys: set[bytes], timeout_s: float = 120
) -> dict[bytes, bytes]:
    """The rendezvous's decisions computed again from the topics as they are, from a fresh
    checkpoint and the whole backlog at once: result message key -> value, once every key in keys
    is decided (or the timeout passed)."""
    name = f"replay_{checkpoint.parent.name}_{checkpoint.name}".replace("-", "_")
    query = (
        to_messages(decisions(spark, config))
        .writeStream.format("memory")
        .queryName(name)
        .option("checkpointLocation", str(checkpoint))
        .start()
    )
    try:
        deadline = time.monotonic() + timeout_s
        while (
            replayed := {row.key.encode(): row.value.encode() for row in spark.table(name).collect()}
        ).keys() < keys and time.monotonic() < deadline:
            time.sleep(2)  # the backlog's batch, then the batch without data in which the watermark decides
    finally:
        query.stop()
    return replayed
