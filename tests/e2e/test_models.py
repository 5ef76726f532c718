"""Adding a challenger to a running pipeline: one config file and one command, nothing else restarts."""
from __future__ import annotations

import time

from pyspark.sql import functions as F

from rdv import runner
from rdv.config import load_config
from rdv.demo.replay import replay
from rdv.demo.summary import count_run
from rdv.model_configs import add_model_config, model_rows
from tests.e2e.test_pipeline import pipeline_config


def test_a_model_added_while_the_pipeline_runs_scores_the_requests_after_its_start(spark, tmp_path, broker, registry):
    config = pipeline_config(tmp_path, registry)
    pids = runner.up(config, sorted(config.models))
    try:
        add_model_config(config, "gbt-b", "models:/fraud@challenger")
        config = load_config(config.conf_dir)
        assert [r["running"] for r in model_rows(config) if r["model"] == "gbt-b"] == ["no"]
        runner.start_model(config, "gbt-b")
        assert [r["running"].startswith("yes, pid") for r in model_rows(config) if r["model"] == "gbt-b"] == [True]

        replay(config.kafka.bootstrap_servers, config.kafka.topics.raw.name, 60, 20, id_prefix="after-start")
        deadline = time.monotonic() + 360
        while time.monotonic() < deadline:
            counts = count_run(spark, config, "after-start")
            if counts.complete(60, ["gbt", "gbt-b", "logreg"]):
                break
            time.sleep(3)
        assert counts.scores == {"gbt": 60, "gbt-b": 60, "logreg": 60}
        assert (counts.results, counts.answered) == (60, 60)
        assert {name: pid for name, pid in runner.running_jobs(config).items() if name in pids} == pids

        scores = spark.read.format("delta").load(config.table("scores")).where(F.col("model") == "gbt-b")
        assert {(r.role, r.model_version) for r in scores.select("role", "model_version").distinct().collect()} == {
            ("challenger", model_rows(config)[0]["version"])}
        assert runner.stop_job(config, "score-gbt-b")
        assert set(runner.running_jobs(config)) == set(pids)
    finally:
        runner.down(config)
