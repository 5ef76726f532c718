"""The example deployment files in deploy/ say what the code does: every job they submit exists
in `make dist`'s jobs/, under its own application name, with arguments its parser takes, a model
the conf has, and the Spark packages and version the project runs with."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pyspark
import pytest
import yaml

from rdv.operations import dist
from rdv.spark_launch import PACKAGES

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "spark-submit"
KUBERNETES = ROOT / "deploy" / "kubernetes"
ENTRIES = {f"{job}.py": job for job in dist.JOBS}
MODELS = {path.stem for path in (ROOT / "conf" / "models").glob("*.yaml")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "dist"
    dist.build(out, echo=lambda *_: None)
    return out


def submitted(script: Path, dist_dir: Path, *arguments: str) -> list[str]:
    """The spark-submit command line a script runs, taken by a spark-submit of SPARK_HOME that
    prints its arguments instead of submitting (the cluster test submits for real)."""
    home = dist_dir.parent / "spark-home"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    printer = home / "bin" / "spark-submit"
    printer.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@"\n')
    printer.chmod(0o755)
    run = subprocess.run(
        ["bash", str(script), *arguments],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "SPARK_HOME": str(home), "RDV_DIST": str(dist_dir)},
    )
    return run.stdout.split("\0")[:-1]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def check_job(app: str, entry: str, arguments: list[str]) -> None:
    assert entry in ENTRIES, f"{entry} is none of make dist's jobs: {sorted(ENTRIES)}"
    job = importlib.import_module(f"jobs.{ENTRIES[entry]}")
    assert app == job.APP, f"{entry} runs as {job.APP}, not {app}"
    args = job.parser().parse_args(arguments)
    if getattr(args, "model", None) is not None:
        assert args.model in MODELS, f"{args.model} is not in conf/models: {sorted(MODELS)}"


def test_every_spark_submit_script_submits_a_job_of_the_dist(built):
    entries = set()
    for script in sorted(SCRIPTS.glob("*.sh")):
        subprocess.run(["bash", "-n", str(script)], check=True)
        if script.name == "submit.sh":
            continue
        command = submitted(script, built, *(["champion"] if script.name == "score.sh" else []))
        (entry_at,) = [i for i, a in enumerate(command) if a.startswith(f"{built}/jobs/")]
        entry, arguments = Path(command[entry_at]).name, command[entry_at + 1 :]
        check_job(option(command, "--name"), entry, arguments)
        assert option(command, "--packages") == PACKAGES, script.name
        assert option(command, "--deploy-mode") == "client"
        assert Path(option(command, "--py-files")).is_file()
        assert Path(option(arguments, "--conf")) == built / "conf"
        assert option(arguments, "--profile") == "cluster"
        entries.add(entry)
    assert entries == set(ENTRIES)


def test_a_model_job_script_without_its_model_says_how_to_run_it(built):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        submitted(SCRIPTS / "score.sh", built)
    assert "usage: score.sh MODEL" in failed.value.stderr


def applications() -> list[tuple[str, dict]]:
    """(name, the SparkApplication spec) of every document in deploy/kubernetes."""
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["apiVersion"] == "sparkoperator.k8s.io/v1beta2", path
            spec = document["spec"]["template"] if document["kind"] == "ScheduledSparkApplication" else document["spec"]
            assert document["kind"] in ("SparkApplication", "ScheduledSparkApplication"), path
            found.append((document["metadata"]["name"], spec))
    return found


def test_every_spark_application_runs_a_job_of_the_dist_with_the_projects_packages():
    specs = applications()
    assert {Path(spec["mainApplicationFile"]).name for _, spec in specs} == set(ENTRIES)
    for name, spec in specs:
        entry = Path(spec["mainApplicationFile"]).name
        app = importlib.import_module(f"jobs.{ENTRIES[entry]}").APP
        assert name == app or name.startswith(f"{app}-"), f"{name} runs {entry}, whose application is {app}"
        check_job(app, entry, spec["arguments"])
        assert spec["type"] == "Python"
        assert spec["sparkVersion"] == pyspark.__version__
        assert spec["deps"]["packages"] == PACKAGES.split(","), name
        # The profile's executor settings come from the driver's environment and win over the spec's.
        env = {e["name"]: e["value"] for e in spec["driver"]["env"]}
        assert env["RDV_EXECUTORS_PER_JOB"] == str(spec["executor"]["instances"]), name
        assert env["RDV_EXECUTOR_CORES"] == str(spec["executor"]["cores"]), name


def test_the_cluster_profile_reads_the_executor_settings_the_applications_set():
    profile = (ROOT / "conf" / "profiles" / "cluster.yaml").read_text()
    assert "${RDV_EXECUTORS_PER_JOB" in profile and "${RDV_EXECUTOR_CORES" in profile
