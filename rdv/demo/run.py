"""`rdv demo`: the whole pipeline on the embedded default, from an empty machine to a verdict.

Trains and registers the demo models if the registry lacks them, starts the broker and every
job through `rdv up`, warms it up with traffic of its own until every query of the latency path
is ready (past its first micro-batches, rdv/progress.py), replays generated events at a given
rate and their labels a few seconds later, waits until every request is archived, scored by
every model, answered and labelled, prints a summary, stops what it started, then compares the models (`rdv compare`) and writes the
report (`rdv report`). The Delta tables stay under var/ for the notebook.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from comparison.compare import compare
from comparison.report import write_report
from rdv.config import PipelineConfig
from rdv.demo.replay import replay
from rdv.demo.summary import count_run, summarize
from rdv.demo.train import demo_models_registered, train_demo_models
from rdv.kafka_security import client_settings
from rdv.operations import runner


@dataclass(frozen=True)
class DemoOutcome:
    ok: bool  # every request archived, answered exactly once, scored once by every model
    run_id: str  # the prefix of this run's request ids
    summary: str
    report: Path | None = None  # the HTML report of the comparison


def run_demo(
    spark: SparkSession,
    config: PipelineConfig,
    events: int,
    rate: float,
    separate: bool = False,
    bad_every: int = 100,
    drift_at: float = 0.5,
    label_delay_s: float = 5.0,
    compare_models: bool = True,
    warm_up_s: float = 120.0,
    echo=print,
) -> DemoOutcome:
    """With compare_models, the run ends with `rdv compare` and `rdv report` over the tables; with
    warm_up_s > 0, the run's events wait until the pipeline is ready, at most that long."""
    models = sorted(config.models)
    if not demo_models_registered(config):
        echo("models: training the demo champion and challenger")
        for alias, version in train_demo_models(spark, config).items():
            echo(f"models: fraud version {version} is the {alias}")
    run_id = f"demo-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:4]}"
    started = datetime.now(UTC)
    try:
        runner.up(config, models, separate=separate, echo=echo)
        if warm_up_s > 0:
            warm_up(config, run_id, rate, warm_up_s, echo)
        echo(f"replay: {events} events at {rate:g}/s into {config.kafka.topics.raw.name} (run {run_id})")
        sent = replay(
            client_settings(config),
            config.kafka.topics.raw.name,
            events,
            rate,
            id_prefix=run_id,
            drift_at=drift_at,
            bad_every=bad_every,
            progress=lambda i, n: echo(f"replay: {i}/{n} sent"),
            labels_topic=config.kafka.topics.labels.name,
            label_delay_s=label_delay_s,
        )
        echo(
            f"replay: done, {sent['events']} events, {sent['bad']} bad messages (for the quarantine) "
            f"and {sent['labels']} labels, each {label_delay_s:g} s after its event"
        )
        _wait_for_everything(spark, config, run_id, events, models, timeout_s=180 + events / rate, echo=echo)
        text, ok = summarize(spark, config, run_id, events, models, started)
        echo("\n" + text)
    finally:
        runner.down(config, echo=echo)
    if not compare_models:
        return DemoOutcome(ok, run_id, text)
    echo("\ncompare: the models on the same requests (rdv compare)")
    compare(spark, config, echo=echo)
    report = write_report(spark, config)
    echo(report.summary)
    echo(f"report: {report.path}")
    return DemoOutcome(ok, run_id, text, report.path)


WARM_UP_ROUND_S = 5.0


def warm_up(config: PipelineConfig, run_id: str, rate: float, timeout_s: float, echo) -> None:
    """Requests at the run's rate, in rounds of WARM_UP_ROUND_S, until every query of the latency
    path is ready (rdv/progress.py) or timeout_s has passed. Their ids start with warm-up-<run id>,
    so the run's summary leaves them out; they are answered, scored and recorded like any other,
    without drift (a drift reference of "first" takes its first window) and without bad messages."""
    started, sent, said = time.monotonic(), 0, None
    for round_ in itertools.count():
        warming = runner.warming_queries(config, answers_only=True)
        elapsed = time.monotonic() - started
        if not warming:
            echo(f"warm-up: the answers' queries are ready after {sent} requests in {elapsed:.0f} s")
            return
        if elapsed >= timeout_s:
            echo(f"warm-up: {', '.join(warming)} not ready after {elapsed:.0f} s; the run goes on")
            return
        if warming != said:
            echo(f"warm-up: {sent} requests sent, {elapsed:.0f} s; waiting for {', '.join(warming)}")
            said = warming
        sent += replay(
            client_settings(config),
            config.kafka.topics.raw.name,
            max(int(rate * WARM_UP_ROUND_S), 1),
            rate,
            seed=round_,
            drift_at=1.0,
            id_prefix=f"warm-up-{run_id}-{round_}",
        )["events"]


def _wait_for_everything(spark, config, run_id, events, models, timeout_s, echo) -> None:
    """Wait while the run's records keep coming: a slow machine gets there late, a stuck pipeline
    is given up on timeout_s after its last new record."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        runner.check_healthy(config)
        counts = count_run(spark, config, run_id)
        if counts != last:
            deadline, last = time.monotonic() + timeout_s, counts
        scored = ", ".join(f"{m} {counts.scores.get(m, 0)}" for m in models)
        echo(
            f"waiting: archived {counts.archive}/{events}, answered {counts.answered}/{events}, scored: {scored}, "
            f"labelled {counts.labels}/{events}"
        )
        if counts.complete(events, models, labels=events):
            return
        time.sleep(5)
    echo(f"waiting: gave up after {timeout_s:.0f} s without a new record; the summary shows what is missing")
