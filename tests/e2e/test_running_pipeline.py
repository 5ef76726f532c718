"""Changing a pipeline while it runs, as users do, with no job restarted: `rdv promote` moves the
aliases and rolls back; a challenger added by one config file and one command scores the requests
after its start; a policy edit takes effect for the next requests, the split exposes each request
to one model while every model scores it; and replaying the topics into a fresh checkpoint decides
every request of the run byte for byte as the live run did. By then, the state stores have taken
snapshots of their checkpoints.

One pipeline serves the module's tests, in this order (the policy edits come last: under another
strategy than `preferred` the promotion's answers would not be the champion's). Starting it and
its first micro-batches cost one and a half minutes on two cores, which each test would otherwise
pay again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from models.registry import current_version, promote
from rdv import cli, runner
from rdv.config import PipelineConfig, load_config
from rdv.demo.summary import count_run
from rdv.model_configs import add_model_config, model_rows
from tests.e2e.helpers import ALWAYS_IN_TIME_MS, replay_decisions, send_and_wait, table_rows, warm_up
from tests.e2e.test_pipeline import pipeline_config
from tests.integration.kafka_io import consume_bytes

MODELS = ["champion", "challenger"]


@dataclass
class Live:
    config: PipelineConfig
    pids: dict[str, int]  # the jobs as `rdv up` started them: the same processes all along


@pytest.fixture(scope="module")
def live(spark, tmp_path_factory, broker, registry):
    config = pipeline_config(tmp_path_factory.mktemp("live"), registry, deadline_ms=ALWAYS_IN_TIME_MS)
    pids = runner.up(config, MODELS)
    try:
        warm_up(spark, config, MODELS)
        yield Live(config, pids)
    finally:
        runner.down(config)


def answers_by(spark, config, prefix):
    """{(model, version, role, reason): number of requests} of the results of one batch of requests."""
    results = table_rows(spark, config, "results", prefix)
    return results.groupby(["model", "model_version", "role", "reason"]).size().to_dict()


def scored_versions(spark, config, prefix):
    scores = table_rows(spark, config, "scores", prefix)
    return scores.groupby(["model", "model_version"]).size().to_dict()


def test_promoting_the_challenger_changes_the_answers_without_restarting_a_job(spark, live, registry):
    config = live.config
    old, new = (current_version(f"models:/fraud@{alias}", registry) for alias in ("champion", "challenger"))
    try:
        send_and_wait(spark, config, "before", 30, MODELS)
        assert answers_by(spark, config, "before") == {("champion", old, "champion", "preferred"): 30}

        # Every request sent after the command returns is in a micro-batch that starts after it,
        # and each model job asks the registry at the start of each micro-batch.
        assert cli.main(["--conf", str(config.conf_dir), "promote", "fraud", new]) == 0
        assert (current_version("models:/fraud@champion", registry),
                current_version("models:/fraud@challenger", registry)) == (new, old)
        send_and_wait(spark, config, "promoted", 30, MODELS, seed=8)
        assert answers_by(spark, config, "promoted") == {("champion", new, "champion", "preferred"): 30}
        assert scored_versions(spark, config, "promoted") == {("champion", new): 30, ("challenger", old): 30}

        assert cli.main(["--conf", str(config.conf_dir), "promote", "fraud", old]) == 0  # rollback
        send_and_wait(spark, config, "rolled-back", 30, MODELS, seed=9)
        assert answers_by(spark, config, "rolled-back") == {("champion", old, "champion", "preferred"): 30}
        assert scored_versions(spark, config, "rolled-back") == {("champion", old): 30, ("challenger", new): 30}
        assert runner.running_jobs(config) == live.pids
    finally:
        promote("fraud", old, registry)  # the session's registry as the other tests expect it


def test_a_model_added_while_the_pipeline_runs_scores_the_requests_after_its_start(spark, live):
    add_model_config(live.config, "second", "models:/fraud@challenger")
    config = load_config(live.config.conf_dir)
    assert [r["running"] for r in model_rows(config) if r["model"] == "second"] == ["no"]
    runner.start_model(config, "second")
    assert [r["running"].startswith("yes, pid") for r in model_rows(config) if r["model"] == "second"] == [True]

    send_and_wait(spark, config, "after-start", 60, [*MODELS, "second"], rate=20)
    counts = count_run(spark, config, "after-start")
    assert counts.scores == {"challenger": 60, "champion": 60, "second": 60}
    assert (counts.results, counts.answered) == (60, 60)
    assert {name: pid for name, pid in runner.running_jobs(config).items() if name in live.pids} == live.pids

    scores = spark.read.format("delta").load(config.table("scores")).where(F.col("model") == "second")
    assert {(r.role, r.model_version) for r in scores.select("role", "model_version").distinct().collect()} == {
        ("challenger", next(r["version"] for r in model_rows(config) if r["model"] == "challenger"))}
    assert runner.stop_job(config, "score-second")
    assert runner.running_jobs(config) == live.pids


def edit_policy(config, **changes) -> None:
    data = yaml.safe_load(config.policy_file.read_text())
    data.update(changes)
    config.policy_file.write_text(yaml.safe_dump(data))


def test_policies_change_without_restarts_split_exposure_and_a_replay_decides_the_same(spark, live, tmp_path):
    config = live.config
    send_and_wait(spark, config, "preferred", 30, MODELS)
    preferred = table_rows(spark, config, "results", "preferred")
    assert set(zip(preferred["strategy"], preferred["model"], preferred["reason"])) == {
        ("preferred", "champion", "preferred")}

    # The features job re-reads the file before each micro-batch: every request sent after
    # the edit is in a micro-batch that starts after it.
    edit_policy(config, strategy="split", split={"shares": {"champion": 50, "challenger": 50}, "salt": "e2e"})
    send_and_wait(spark, config, "split", 60, MODELS, seed=8)
    split = table_rows(spark, config, "results", "split")
    assert (split["strategy"] == "split").all() and (split["reason"] == "preferred").all()
    assert (split["model"] == split["arm"]).all()  # the arm answers, in time
    exposure = split["arm"].value_counts().to_dict()
    assert set(exposure) == {"champion", "challenger"} and min(exposure.values()) >= 15, exposure
    scores = table_rows(spark, config, "scores", "split")
    assert scores.groupby("model").size().to_dict() == {"champion": 60, "challenger": 60}  # still paired

    edit_policy(config, strategy="first")
    send_and_wait(spark, config, "first", 20, MODELS, seed=9)
    first = table_rows(spark, config, "results", "first")
    assert (first["strategy"] == "first").all() and (first["reason"] == "preferred").all()
    assert runner.running_jobs(config) == live.pids

    # Every request of the module's run so far, each answered once on the topic.
    live_results = consume_bytes(config.kafka.bootstrap_servers, config.kafka.topics.results.name)
    live_ids = [key for key, _ in live_results]
    assert len(live_ids) == len(set(live_ids))
    answered = {prefix: sum(key.startswith(prefix.encode()) for key in live_ids)
                for prefix in ("preferred", "split", "first")}
    assert answered == {"preferred": 30, "split": 60, "first": 20}, answered

    # The same topics, a fresh checkpoint, the whole backlog at once: the same decisions, byte for
    # byte, under every policy, model version and model set the run went through.
    replayed = replay_decisions(spark, config, tmp_path / "replay-checkpoint", set(live_ids), timeout_s=300)
    assert {key: replayed.get(key) for key, _ in live_results} == dict(live_results)


def test_the_state_stores_take_snapshots_so_that_a_restart_replays_few_changes(live):
    """With changelog checkpointing, a state store's checkpoint is its last snapshot and the
    changes since, and only a snapshot lets the older changes be cleaned up. Maintenance uploads
    one a minute at most; the pipeline has run for minutes and hundreds of micro-batches here."""
    for query in ("features", "rendezvous"):
        state = Path(live.config.checkpoint(query)) / "state"
        changes, snapshots = list(state.rglob("*.changelog")), list(state.rglob("*.zip"))
        assert changes and snapshots, f"{query}: {len(changes)} changelog files, no snapshot"
