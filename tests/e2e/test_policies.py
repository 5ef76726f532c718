"""Policies on a running pipeline: a policy edit takes effect for the next requests without a
restart, the split exposes each request to one model while every model scores it, and replaying
the topics into a fresh checkpoint decides every request byte for byte as the live run did."""
from __future__ import annotations

import yaml

from rdv import runner
from tests.e2e.helpers import ALWAYS_IN_TIME_MS, replay_decisions, send_and_wait, table_rows, warm_up
from tests.e2e.test_pipeline import pipeline_config
from tests.integration.kafka_io import consume_bytes

MODELS = ["champion", "challenger"]


def edit_policy(config, **changes) -> None:
    data = yaml.safe_load(config.policy_file.read_text())
    data.update(changes)
    config.policy_file.write_text(yaml.safe_dump(data))


def test_policies_change_without_restarts_split_exposure_and_a_replay_decides_the_same(spark, tmp_path, broker, registry):
    config = pipeline_config(tmp_path, registry, deadline_ms=ALWAYS_IN_TIME_MS)
    pids = runner.up(config, MODELS)
    try:
        warm_up(spark, config, MODELS)
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
        assert runner.running_jobs(config) == pids  # no job restarted
    finally:
        runner.down(config)

    live = consume_bytes(config.kafka.bootstrap_servers, config.kafka.topics.results.name)
    live_ids = [key for key, _ in live]
    assert len(live_ids) == len(set(live_ids)) == 10 + 30 + 60 + 20

    # The same topics, a fresh checkpoint, the whole backlog at once: the same decisions, byte for byte.
    replayed = replay_decisions(spark, config, tmp_path / "replay-checkpoint", set(live_ids))
    assert {key: replayed.get(key) for key, _ in live} == dict(live)
