"""The whole pipeline as users run it: `rdv up` processes, events through the broker, the summary,
and the notebook on the tables it left."""
from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

from rdv.demo.run import run_demo
from tests.helpers import REPO, make_config


def pipeline_config(tmp_path, registry, models=("champion", "challenger"), deadline_ms=8000):
    # profile cluster: the session's broker is "theirs", so `rdv up` and `rdv down` leave it alone.
    return make_config(tmp_path, models=models, profile_override="cluster", mlflow={"tracking_uri": registry},
                       policy={"deadline_ms": deadline_ms},
                       rendezvous={"max_deadline_ms": deadline_ms, "grace": "2 seconds"})


def test_one_application_answers_every_request_and_the_notebook_runs_on_its_tables(spark, tmp_path, broker, registry):
    config = pipeline_config(tmp_path, registry, models=("champion", "challenger", "canary"))
    outcome = run_demo(spark, config, events=200, rate=25, separate=False, bad_every=50)
    assert outcome.ok, outcome.summary
    assert "every request answered exactly once, scored by every model and archived: yes" in outcome.summary
    assert "quarantined        4" in outcome.summary  # one bad message after every 50 events
    assert "scores canary v1 (canary): 200 rows, 200 requests, 0 errors" in outcome.summary
    assert "answered by canary" not in outcome.summary

    notebook = nbformat.read(REPO / "notebooks" / "champion_challenger.ipynb", as_version=4)
    env = {"RDV_CONF": str(config.conf_dir), "RDV_RUN": outcome.run_id}
    os.environ.update(env)  # the kernel inherits the parameters from the environment
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        for key in env:
            os.environ.pop(key)
    outputs = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                        for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "200 requests archived, 200 answered, 600 scores" in outputs
    assert any("image/png" in o.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.outputs), "the latency plot is missing"


def test_separate_spark_submit_processes_answer_every_request(spark, tmp_path, broker, registry):
    config = pipeline_config(tmp_path, registry)
    outcome = run_demo(spark, config, events=120, rate=20, separate=True, bad_every=40)
    assert outcome.ok, outcome.summary
    assert "quarantined        3" in outcome.summary
