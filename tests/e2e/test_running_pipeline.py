"""Changing a pipeline while it runs, as users do, with no job restarted: with labels arriving after
a drift, `rdv compare` with compare.promote promotes the better challenger and rolls back a worse
version a person promoted (and without it, promotes nothing); `rdv promote` moves the aliases and
rolls back; a challenger added by one config file and one command scores the requests
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

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from comparison.compare import compare
from models.following import announce_alias_change
from models.registry import BY_COMPARE, BY_PERSON, current_version, last_change, promote, rolled_back
from rdv import commands
from rdv.config import PipelineConfig, PromotionRule, load_config
from rdv.demo.replay import replay
from rdv.demo.summary import RunCounts, count_run
from rdv.durations import duration_ms
from rdv.kafka_security import client_settings
from rdv.operations import runner
from rdv.operations.model_configs import add_model_config, model_rows
from tests.e2e.helpers import (
    ALWAYS_IN_TIME_MS,
    replay_decisions,
    send_and_wait,
    table_rows,
    wait_for_requests,
    wait_while_progressing,
    warm_up,
)
from tests.e2e.test_pipeline import pipeline_config
from tests.integration.kafka_io import consume_bytes

MODELS = ["champion", "challenger"]
# Per labelled batch of the guarded promotion: enough for the challenger's interval to clear zero
# after the drift, within the watch of a person's promotion.
GUARDED_EVENTS, GUARDED_RATE, LABEL_DELAY_S = 400, 40, 2.0
WATCH = "3 minutes"


@dataclass
class Guarded:
    """What the guarded promotion's steps left: the champion's version after each, the promotions
    table, and who answered each batch of requests."""

    before: str = ""  # the champion's version at the start, the challenger's
    challenger: str = ""
    after_off: str = ""  # after `rdv compare` with compare.promote off
    table_after_off: bool = True  # whether the promotions table exists then
    after_on: str = ""
    after_person: str = ""  # after `rdv promote` of the version the drift made worse
    after_watch: str = ""  # after `rdv compare` within the watch
    promotions: pd.DataFrame = field(default_factory=pd.DataFrame)
    answers: dict[str, dict] = field(default_factory=dict)  # prefix -> answers_by
    held_back: bool = False  # the rolled-back version carries the mark


@dataclass
class Story:
    """What the run left, step by step."""

    config: PipelineConfig
    pids: dict[str, int]  # the jobs as `rdv up` started them: the same processes all along
    guarded: Guarded = field(default_factory=Guarded)
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


def send_labelled_drift(spark, config: PipelineConfig, prefix: str, labelled_so_far: int) -> int:
    """GUARDED_EVENTS events of the drifted pattern (where the challenger is the better model), each
    labelled LABEL_DELAY_S later; waits for their answers, scores and labels. Labels so far."""
    replay(
        client_settings(config),
        config.kafka.topics.raw.name,
        GUARDED_EVENTS,
        GUARDED_RATE,
        seed=len(prefix),
        drift_at=0.0,
        id_prefix=prefix,
        labels_topic=config.kafka.topics.labels.name,
        label_delay_s=LABEL_DELAY_S,
    )
    wait_for_requests(spark, config, prefix, GUARDED_EVENTS, MODELS)
    path, expected = config.table("labels"), labelled_so_far + GUARDED_EVENTS
    wait_while_progressing(
        lambda: spark.read.format("delta").load(path).count() if DeltaTable.isDeltaTable(spark, path) else 0,
        lambda rows: rows >= expected,
        300,
        lambda rows: f"labels: {rows} of {expected} rows, none new for 300 s",
    )
    return expected


def guarded_promotions(spark, story: Story, registry: str) -> None:
    """compare.promote off, then on: the challenger, better after the drift, is promoted; the old
    champion, promoted again by a person, is rolled back within the watch."""
    config, seen = story.config, story.guarded
    champion = lambda: current_version("models:/fraud@champion", registry)  # noqa: E731
    seen.before, seen.challenger = champion(), current_version("models:/fraud@challenger", registry)
    rule = PromotionRule(enabled=True, cooldown="1 second", watch=WATCH)
    promoting = config.model_copy(update={"compare": config.compare.model_copy(update={"promote": rule})})
    quiet = lambda line: None  # noqa: E731
    try:
        # A change of champion by an earlier test is out of the watch before this one's requests.
        if (last := last_change("fraud", registry)) is not None:
            time.sleep(
                max(0.0, (last.at + timedelta(milliseconds=duration_ms(WATCH)) - datetime.now(UTC)).total_seconds())
            )
        labelled = send_labelled_drift(spark, config, "drifted", 0)
        compare(spark, config, echo=quiet)
        seen.after_off = champion()
        seen.table_after_off = DeltaTable.isDeltaTable(spark, config.table("promotions"))
        compare(spark, promoting, echo=quiet)
        seen.after_on = champion()
        send_and_wait(spark, config, "auto-promoted", 20, MODELS, seed=21)
        # A person promotes the version the drift made worse; the labels of the requests after it
        # show it, and the next `rdv compare` within the watch rolls it back.
        assert commands.main(["--conf", str(config.conf_dir), "promote", "fraud", seen.before]) == 0
        seen.after_person = champion()
        labelled = send_labelled_drift(spark, config, "worse", labelled)
        compare(spark, promoting, echo=quiet)
        seen.after_watch = champion()
        send_and_wait(spark, config, "after-rollback", 20, MODELS, seed=22)
        seen.promotions = spark.read.format("delta").load(config.table("promotions")).toPandas()
        for prefix in ("drifted", "auto-promoted", "worse", "after-rollback"):
            seen.answers[prefix] = answers_by(spark, config, prefix)
        seen.held_back = rolled_back("fraud", seen.before, registry)
        story.running["guarded promotions"] = runner.running_jobs(config)
    finally:
        # The session's registry as the other tests expect it, and the jobs told at once, as
        # `rdv promote` tells them: the next step's requests are the old champion's.
        promote("fraud", seen.before, registry)
        announce_alias_change(config.alias_marker)


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
        guarded_promotions(spark, run, registry)
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


def test_rdv_compare_promotes_the_better_challenger_and_rolls_back_a_worse_champion_without_restarts(story):
    seen, old, new = story.guarded, story.guarded.before, story.guarded.challenger
    assert seen.answers["drifted"] == {("champion", old, "champion", "preferred"): GUARDED_EVENTS}
    # compare.promote off: the recommendation moves nothing.
    assert (seen.after_off, seen.table_after_off) == (old, False)
    # On: the challenger, better after the drift, is the champion, with its evidence on record.
    assert seen.after_on == new
    assert seen.answers["auto-promoted"] == {("champion", new, "champion", "preferred"): 20}
    changes = seen.promotions.sort_values("at", ignore_index=True)
    assert list(zip(changes["action"], changes["by"], changes["from_version"], changes["to_version"])) == [
        ("promote", BY_COMPARE, old, new),
        ("promote", BY_PERSON, new, old),
        ("rollback", BY_COMPARE, old, new),
    ], changes
    promoted = changes.iloc[0]
    assert promoted["labelled"] == GUARDED_EVENTS and 0 < promoted["ci_low"] < promoted["effect"], promoted
    assert "every guard passed" in promoted["reason"] and promoted["rule"], promoted
    # A person's promotion of the worse version is rolled back within the watch, and held back.
    assert (seen.after_person, seen.after_watch) == (old, new)
    assert seen.answers["worse"] == {("champion", old, "champion", "preferred"): GUARDED_EVENTS}
    assert seen.answers["after-rollback"] == {("champion", new, "champion", "preferred"): 20}
    rollback = changes.iloc[2]
    assert rollback["labelled"] == GUARDED_EVENTS and rollback["ci_low"] > 0, rollback
    assert seen.held_back
    assert story.running["guarded promotions"] == story.pids


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
