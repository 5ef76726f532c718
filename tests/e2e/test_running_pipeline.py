"""Changing a pipeline while it runs, as users do, with no job restarted: `rdv promote` moves the
aliases and rolls back; a challenger added by one config file and one command scores the requests
after its start; a policy edit takes effect for the next requests, the split exposes each request
to one model while every model scores it; and replaying the topics into a fresh checkpoint decides
every request of the run byte for byte as the live run did. By then, the state stores have taken
snapshots of their checkpoints.

One pipeline serves the module: its fixture runs the whole story once, in order (the policy edits
come last: under another strategy than `preferred` the promotion's answers would not be the
champion's), and records what each step left; each test asserts on its steps. So any test, run
alone or with the others, sees the same run, and the replay covers every policy, model version and
model set of it. Starting the pipeline and its first micro-batches cost one and a half minutes on
two cores, which each test would otherwise pay again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F

from models.registry import current_version, promote
from rdv import commands
from rdv.config import PipelineConfig, load_config
from rdv.demo.summary import RunCounts, count_run
from rdv.operations import runner
from rdv.operations.model_configs import add_model_config, model_rows
from tests.e2e.helpers import ALWAYS_IN_TIME_MS, replay_decisions, send_and_wait, table_rows, warm_up
from tests.e2e.test_pipeline import pipeline_config
from tests.integration.kafka_io import consume_bytes

MODELS = ["champion", "challenger"]


@dataclass
class Story:
    """What the run left, step by step."""

    config: PipelineConfig
    pids: dict[str, int]  # the jobs as `rdv up` started them: the same processes all along
    old: str = ""  # the champion's version at the start, and the challenger's
    new: str = ""
    answers: dict[str, dict] = field(default_factory=dict)  # prefix -> answers_by
    scored: dict[str, dict] = field(default_factory=dict)  # prefix -> scored_versions
    promote_exits: list[int] = field(default_factory=list)
    aliases_after_promote: tuple[str, str] = ("", "")
    running: dict[str, dict[str, int]] = field(default_factory=dict)  # after a step -> the running jobs
    second_before_start: list[str] = field(default_factory=list)  # `rdv model list`'s running column
    second_after_start: list[str] = field(default_factory=list)
    after_start: RunCounts | None = None  # count_run of the requests sent after the second model started
    second_scored_as: set = field(default_factory=set)  # (role, version) of its scores
    challenger_version: str = ""
    second_stopped: bool = False
    results: dict[str, pd.DataFrame] = field(default_factory=dict)  # prefix -> results rows
    scores: dict[str, pd.DataFrame] = field(default_factory=dict)
    live_results: list[tuple[bytes, bytes]] = field(default_factory=list)  # rdv.results, as published
    replayed: dict[bytes, bytes] = field(default_factory=dict)


def answers_by(spark, config, prefix):
    """{(model, version, role, reason): number of requests} of the results of one batch of requests."""
    results = table_rows(spark, config, "results", prefix)
    return results.groupby(["model", "model_version", "role", "reason"]).size().to_dict()


def scored_versions(spark, config, prefix):
    scores = table_rows(spark, config, "scores", prefix)
    return scores.groupby(["model", "model_version"]).size().to_dict()


def edit_policy(config, **changes) -> None:
    data = yaml.safe_load(config.policy_file.read_text())
    data.update(changes)
    config.policy_file.write_text(yaml.safe_dump(data))


def promotions(spark, story: Story, registry: str) -> None:
    config = story.config
    story.old, story.new = (current_version(f"models:/fraud@{alias}", registry) for alias in ("champion", "challenger"))
    try:
        send_and_wait(spark, config, "before", 30, MODELS)
        story.answers["before"] = answers_by(spark, config, "before")
        # Every request sent after the command returns is in a micro-batch that starts after it:
        # `rdv promote` touches the marker each model job looks at before each micro-batch.
        story.promote_exits.append(commands.main(["--conf", str(config.conf_dir), "promote", "fraud", story.new]))
        story.aliases_after_promote = (
            current_version("models:/fraud@champion", registry),
            current_version("models:/fraud@challenger", registry),
        )
        send_and_wait(spark, config, "promoted", 30, MODELS, seed=8)
        # And the rollback.
        story.promote_exits.append(commands.main(["--conf", str(config.conf_dir), "promote", "fraud", story.old]))
        send_and_wait(spark, config, "rolled-back", 30, MODELS, seed=9)
        for prefix in ("promoted", "rolled-back"):
            story.answers[prefix] = answers_by(spark, config, prefix)
            story.scored[prefix] = scored_versions(spark, config, prefix)
        story.running["promotions"] = runner.running_jobs(config)
    finally:
        promote("fraud", story.old, registry)  # the session's registry as the other tests expect it


def a_model_added(spark, story: Story) -> None:
    add_model_config(story.config, "second", "models:/fraud@challenger")
    config = load_config(story.config.conf_dir)
    story.second_before_start = [r["running"] for r in model_rows(config) if r["model"] == "second"]
    runner.start_model(config, "second")
    story.second_after_start = [r["running"] for r in model_rows(config) if r["model"] == "second"]
    send_and_wait(spark, config, "after-start", 60, [*MODELS, "second"], rate=20)
    story.after_start = count_run(spark, config, "after-start")
    story.running["second started"] = runner.running_jobs(config)
    scores = spark.read.format("delta").load(config.table("scores")).where(F.col("model") == "second")
    story.second_scored_as = {
        (r.role, r.model_version) for r in scores.select("role", "model_version").distinct().collect()
    }
    story.challenger_version = next(r["version"] for r in model_rows(config) if r["model"] == "challenger")
    story.second_stopped = runner.stop_job(config, "score-second")
    story.running["second stopped"] = runner.running_jobs(config)


def policy_edits(spark, story: Story) -> None:
    config = story.config
    send_and_wait(spark, config, "preferred", 30, MODELS)
    # The features job reads the file before each micro-batch: every request sent after the edit
    # is in a micro-batch that starts after it.
    edit_policy(config, strategy="split", split={"shares": {"champion": 50, "challenger": 50}, "salt": "e2e"})
    send_and_wait(spark, config, "split", 60, MODELS, seed=8)
    edit_policy(config, strategy="first")
    send_and_wait(spark, config, "first", 20, MODELS, seed=9)
    for prefix in ("preferred", "split", "first"):
        story.results[prefix] = table_rows(spark, config, "results", prefix)
    story.scores["split"] = table_rows(spark, config, "scores", "split")
    story.running["policy edits"] = runner.running_jobs(config)


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory, broker, registry) -> Story:
    config = pipeline_config(tmp_path_factory.mktemp("live"), registry, deadline_ms=ALWAYS_IN_TIME_MS)
    run = Story(config, runner.up(config, MODELS))
    try:
        warm_up(spark, config, MODELS)
        promotions(spark, run, registry)
        a_model_added(spark, run)
        policy_edits(spark, run)
        # Every request of the run, each as the live rendezvous published it; then the same topics,
        # a fresh checkpoint and the whole backlog at once.
        run.live_results = consume_bytes(config.kafka.bootstrap_servers, config.kafka.topics.results.name)
        run.replayed = replay_decisions(
            spark,
            config,
            tmp_path_factory.mktemp("replay") / "checkpoint",
            {key for key, _ in run.live_results},
            timeout_s=300,
        )
        yield run
    finally:
        runner.down(config)


def test_promoting_the_challenger_changes_the_answers_without_restarting_a_job(story):
    old, new = story.old, story.new
    assert story.answers["before"] == {("champion", old, "champion", "preferred"): 30}
    assert story.promote_exits == [0, 0]
    assert story.aliases_after_promote == (new, old)
    assert story.answers["promoted"] == {("champion", new, "champion", "preferred"): 30}
    assert story.scored["promoted"] == {("champion", new): 30, ("challenger", old): 30}
    assert story.answers["rolled-back"] == {("champion", old, "champion", "preferred"): 30}
    assert story.scored["rolled-back"] == {("champion", old): 30, ("challenger", new): 30}
    assert story.running["promotions"] == story.pids


def test_a_model_added_while_the_pipeline_runs_scores_the_requests_after_its_start(story):
    assert story.second_before_start == ["no"]
    assert [running.startswith("yes, pid") for running in story.second_after_start] == [True]
    counts = story.after_start
    assert counts.scores == {"challenger": 60, "champion": 60, "second": 60}
    assert (counts.results, counts.answered) == (60, 60)
    assert {name: pid for name, pid in story.running["second started"].items() if name in story.pids} == story.pids
    assert story.second_scored_as == {("challenger", story.challenger_version)}
    assert story.second_stopped
    assert story.running["second stopped"] == story.pids


def test_policies_change_without_restarts_and_split_exposes_each_request_to_one_model(story):
    preferred = story.results["preferred"]
    assert set(zip(preferred["strategy"], preferred["model"], preferred["reason"])) == {
        ("preferred", "champion", "preferred")
    }
    split = story.results["split"]
    assert (split["strategy"] == "split").all() and (split["reason"] == "preferred").all()
    assert (split["model"] == split["arm"]).all()  # the arm answers, in time
    exposure = split["arm"].value_counts().to_dict()
    assert set(exposure) == {"champion", "challenger"} and min(exposure.values()) >= 15, exposure
    assert story.scores["split"].groupby("model").size().to_dict() == {"champion": 60, "challenger": 60}  # still paired
    first = story.results["first"]
    assert (first["strategy"] == "first").all() and (first["reason"] == "preferred").all()
    assert story.running["policy edits"] == story.pids


def test_a_replay_decides_every_request_of_the_run_as_the_live_run_did(story):
    """Under every policy, model version and model set the run went through, byte for byte."""
    live_ids = [key for key, _ in story.live_results]
    assert len(live_ids) == len(set(live_ids))  # each request answered once on the topic
    steps = ("warm-up", "before", "promoted", "rolled-back", "after-start", "preferred", "split", "first")
    answered = {prefix: sum(key.startswith(prefix.encode()) for key in live_ids) for prefix in steps}
    assert answered == {
        "warm-up": 10,
        "before": 30,
        "promoted": 30,
        "rolled-back": 30,
        "after-start": 60,
        "preferred": 30,
        "split": 60,
        "first": 20,
    }, answered
    assert {key: story.replayed.get(key) for key, _ in story.live_results} == dict(story.live_results)


def test_the_state_stores_take_snapshots_so_that_a_restart_replays_few_changes(story):
    """With changelog checkpointing, a state store's checkpoint is its last snapshot and the
    changes since, and only a snapshot lets the older changes be cleaned up. Maintenance uploads
    one a minute at most; the pipeline has run for minutes and hundreds of micro-batches here."""
    for query in ("features", "rendezvous"):
        state = Path(story.config.checkpoint(query)) / "state"
        changes, snapshots = list(state.rglob("*.changelog")), list(state.rglob("*.zip"))
        assert changes and snapshots, f"{query}: {len(changes)} changelog files, no snapshot"
