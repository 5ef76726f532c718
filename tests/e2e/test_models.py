"""Adding a challenger to a running pipeline: one config file and one command, nothing else restarts."""
from __future__ import annotations

import time

from pyspark.sql import functions as F

from rdv import runner
from rdv.config import load_config
from rdv.demo.replay import replay
from rdv.demo.summary import count_run
from rdv.kafka_security import client_settings
from rdv.model_configs import add_model_config, model_rows
from tests.e2e.test_pipeline import pipeline_config


def test_a_model_added_while_the_pipeline_runs_scores_the_requests_after_its_start(spark, tmp_path, broker, registry):
    config = pipeline_config(tmp_path, registry)
    pids = runner.up(config, sorted(config.models))
    try:
        add_model_config(config, "second", "models:/fraud@challenger")
        config = load_config(config.conf_dir)
        assert [r["running"] for r in model_rows(config) if r["model"] == "second"] == ["no"]
        runner.start_model(config, "second")
        assert [r["running"].startswith("yes, pid") for r in model_rows(config) if r["model"] == "second"] == [True]

        replay(client_settings(config), config.kafka.topics.raw.name, 60, 20, id_prefix="after-start")
        deadline = time.monotonic() + 360
        while time.monotonic() < deadline:
            counts = count_run(spark, config, "after-start")
            if counts.complete(60, ["challenger", "champion", "second"]):
                break
            time.sleep(3)
        assert counts.scores == {"challenger": 60, "champion": 60, "second": 60}
        assert (counts.results, counts.answered) == (60, 60)
        assert {name: pid for name, pid in runner.running_jobs(config).items() if name in pids} == pids

        scores = spark.read.format("delta").load(config.table("scores")).where(F.col("model") == "second")
        assert {(r.role, r.model_version) for r in scores.select("role", "model_version").distinct().collect()} == {
            ("challenger", next(r["version"] for r in model_rows(config) if r["model"] == "challenger"))}
        assert runner.stop_job(config, "score-second")
        assert set(runner.running_jobs(config)) == set(pids)
    finally:
        runner.down(config)
