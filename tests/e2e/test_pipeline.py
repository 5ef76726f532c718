"""The whole pipeline as users run it: `rdv up` processes, events and late labels through the broker,
the summary, the comparison of the models, the report, and the notebook on the tables it left."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pandas as pd
from nbclient import NotebookClient

from rdv.catalog import register_tables
from rdv.demo.run import run_demo
from tests.helpers import REPO, make_config

EVENTS, DRIFT_AT = 1600, 0.5


def pipeline_config(tmp_path, registry, models=("champion", "challenger"), deadline_ms=8000, **sections):
    # profile cluster: the session's broker is "theirs", so `rdv up` and `rdv down` leave it alone.
    return make_config(
        tmp_path,
        models=models,
        profile_override="cluster",
        mlflow={"tracking_uri": registry},
        policy={"deadline_ms": deadline_ms},
        rendezvous={"max_deadline_ms": deadline_ms, "grace": "2 seconds"},
        **sections,
    )


def read(spark, config, table: str) -> pd.DataFrame:
    return spark.read.format("delta").load(config.table(table)).toPandas()


def test_a_seeded_demo_shows_the_champion_falling_after_the_drift_and_says_promote(spark, tmp_path, broker, registry):
    config = pipeline_config(
        tmp_path, registry, models=("champion", "challenger", "canary"), compare={"window": "8 seconds"}
    )
    outcome = run_demo(
        spark, config, events=EVENTS, rate=50, separate=False, bad_every=400, drift_at=DRIFT_AT, label_delay_s=3
    )
    assert outcome.ok, outcome.summary
    assert "every request answered exactly once, scored by every model and archived: yes" in outcome.summary
    assert "quarantined        4" in outcome.summary  # one bad message after every 400 events
    assert f"labels             {EVENTS}" in outcome.summary
    assert f"scores canary v1 (canary): {EVENTS} rows, {EVENTS} requests, 0 errors" in outcome.summary
    assert "answered by canary" not in outcome.summary

    # The drift point: the event time of the first request generated with the new pattern.
    archive = read(spark, config, "archive").set_index("request_id")
    drift_time = archive.loc[f"{outcome.run_id}-{int(EVENTS * DRIFT_AT):08d}", "event_time"]
    comparison = read(spark, config, "comparison")
    full = comparison[comparison["labelled"] >= 150]
    before = full[full["window_end"] <= drift_time].set_index(["window_start", "model"])["roc_auc"].unstack()
    after = full[full["window_start"] >= drift_time].set_index(["window_start", "model"])["roc_auc"].unstack()
    assert len(before) and len(after), comparison[["window_start", "model", "labelled"]]
    assert before["champion"].mean() > after["champion"].mean() + 0.15, comparison
    assert (after["challenger"] > after["champion"]).all(), after

    (verdict,) = read(spark, config, "comparison_tests").itertuples()
    assert (verdict.challenger, verdict.champion, verdict.labelled) == ("challenger", "champion", EVENTS)
    assert verdict.recommendation == "promote" and 0 < verdict.ci_low < verdict.effect < verdict.ci_high, verdict
    assert verdict.mcnemar_p_value is not None
    # Each model's CPU beside its gain, from its query's tasks and UDF: the models share one application.
    assert verdict.champion_cpu_s_per_1000 > 0 and verdict.challenger_cpu_s_per_1000 > 0, verdict
    costed = comparison[comparison["cpu_s_per_1000_requests"].notna()]
    assert set(costed["model"]) == {"champion", "challenger", "canary"}, costed
    assert set(costed["cost_measured_by"]) == {"tasks"}

    drift = read(spark, config, "drift")
    flagged = drift[drift["flagged"] & (drift["window_start"] >= drift_time)]
    assert {"card_present", "category_risk"} <= set(flagged["name"]), drift[drift["flagged"]]
    assert not drift[drift["window_end"] <= drift_time]["flagged"].any(), drift[drift["flagged"]]
    assert {"score:canary", "score:champion", "score:challenger"} <= {
        f"{k}:{n}" for k, n in zip(drift["kind"], drift["name"])
    }

    register_tables(spark, config)
    assert spark.sql("SELECT recommendation FROM rdv.comparison_tests").first()[0] == "promote"

    # `rdv report` as a user runs it: one HTML file with its plots inside, and a summary.
    out = tmp_path / "report.html"
    report = subprocess.run(
        [sys.executable, "-m", "rdv.commands", "--conf", str(config.conf_dir), "report", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert "challenger vs champion on roc_auc" in report.stdout and "-> PROMOTE" in report.stdout
    assert "drift: flagged" in report.stdout and f"report: {out}" in report.stdout
    page = out.read_text()
    assert page.count("<img ") == page.count("src='data:image/png;base64,") == 4  # every image inside the file
    assert "<script" not in page and "<link" not in page

    notebook = nbformat.read(REPO / "notebooks" / "champion_challenger.ipynb", as_version=4)
    env = {"RDV_CONF": str(config.conf_dir), "RDV_RUN": outcome.run_id}
    os.environ.update(env)  # the kernel inherits the parameters from the environment
    try:
        NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
        ).execute()
    finally:
        for key in env:
            os.environ.pop(key)
    outputs = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )
    assert f"{EVENTS} requests archived, {EVENTS} answered, {3 * EVENTS} scores, {EVENTS} labels" in outputs
    assert "challenger vs champion: PROMOTE" in outputs
    images = sum(
        "image/png" in o.get("data", {}) for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
    )
    assert images == 4, "a plot is missing"
