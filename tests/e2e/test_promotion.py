"""Promotion while the pipeline runs: `rdv promote` moves the aliases, and the next requests are
answered by the new champion, with no job restarted; the same command rolls back."""
from __future__ import annotations

from models.registry import current_version, promote
from rdv import cli, runner
from tests.e2e.helpers import ALWAYS_IN_TIME_MS, send_and_wait, table_rows, warm_up
from tests.e2e.test_pipeline import pipeline_config

MODELS = ["champion", "challenger"]


def answers_by(spark, config, prefix):
    """{(model, version, role, reason): number of requests} of the results of one batch of requests."""
    results = table_rows(spark, config, "results", prefix)
    return results.groupby(["model", "model_version", "role", "reason"]).size().to_dict()


def scored_versions(spark, config, prefix):
    scores = table_rows(spark, config, "scores", prefix)
    return scores.groupby(["model", "model_version"]).size().to_dict()


def test_promoting_the_challenger_changes_the_answers_without_restarting_a_job(spark, tmp_path, broker, registry):
    config = pipeline_config(tmp_path, registry, deadline_ms=ALWAYS_IN_TIME_MS)
    old, new = (current_version(f"models:/fraud@{alias}", registry) for alias in ("champion", "challenger"))
    pids = runner.up(config, MODELS)
    try:
        warm_up(spark, config, MODELS)
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

        assert runner.running_jobs(config) == pids  # the same processes all along
    finally:
        runner.down(config)
        promote("fraud", old, registry)  # the session's registry as the other tests expect it
