"""The jobs on a real Spark cluster: a standalone master and two workers of local processes, every
job a spark-submit in client mode from the built package (`make dist`'s wheel, installed in an
environment of its own), not from the source tree, with a rdv.features topic of four partitions,
the Delta tables on a path every worker shares, and the cluster chosen by a profile of the conf.

`rdv demo --separate` runs there as a user would run it: the walking skeleton's promise (every
request archived, answered exactly once, scored once by every model) holds on the cluster too. It is
also the suite's test of the demo as separate spark-submit processes (test_faults and test_soak run
them under `rdv up`)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition

from rdv.config import load_config
from rdv.kafka_security import client_settings
from rdv.operations import dist
from tests.helpers import TEST_JAVA_OPTIONS, write_conf
from tests.standalone import StandaloneCluster

EVENTS, RATE, BAD_EVERY = 120, 20, 40
JOB_APPS = {"rdv-features", "rdv-recording", "rdv-score", "rdv-rendezvous", "rdv-demo"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The Python of an environment that holds the project only as `make dist` built it. Its
    third-party packages are the project environment's (the same versions, not installed twice),
    added to its path by a .pth file, which does not run that environment's editable install of
    the source tree."""
    work = tmp_path_factory.mktemp("dist")
    wheel = dist.build(work / "dist", echo=lambda *_: None)
    env = work / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (env.joinpath(site) / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)], check=True
    )
    where = subprocess.run(
        [str(python), "-c", "import jobs, rdv; print(rdv.__file__, jobs.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=work,
    ).stdout.split()
    assert all(path.startswith(str(env)) for path in where), where
    return python


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    standalone = StandaloneCluster(tmp_path_factory.mktemp("cluster")).start()
    yield standalone
    standalone.stop()


def standalone_profile(cluster: StandaloneCluster) -> dict:
    """The conf's profile for this cluster: what a user's cluster profile says, on loopback."""
    return {
        "kafka": {"topics": {"features": {"partitions": 4}}},
        "paths": {"tables": "${RDV_SHARED}/delta", "checkpoints": "${RDV_SHARED}/checkpoints"},
        "spark": {
            "master": cluster.url,
            "conf": {
                # One core per job: without a limit, the first job would take every core of the cluster.
                "spark.cores.max": "1",
                "spark.executor.cores": "1",
                "spark.executor.extraJavaOptions": TEST_JAVA_OPTIONS,
            },
        },
    }


def test_the_demo_runs_on_a_standalone_cluster_from_the_built_package(
    spark, tmp_path, broker, registry, installed, cluster, monkeypatch
):
    conf = write_conf(tmp_path, mlflow={"tracking_uri": registry})
    (conf / "profiles").mkdir()
    (conf / "profiles" / "standalone.yaml").write_text(yaml.safe_dump(standalone_profile(cluster)))
    shared = tmp_path / "shared"
    env = {
        **os.environ,
        "RDV_SHARED": str(shared),
        "PYSPARK_PYTHON": str(installed),
        "PYSPARK_DRIVER_PYTHON": str(installed),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    demo = subprocess.run(
        [
            str(installed),
            "-m",
            "rdv.commands",
            "--conf",
            str(conf),
            "--profile",
            "standalone",
            "demo",
            "--separate",
            "--events",
            str(EVENTS),
            "--rate",
            str(RATE),
            "--bad-every",
            str(BAD_EVERY),
            "--label-delay",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "every request answered exactly once, scored by every model and archived: yes" in demo.stdout, demo.stdout
    assert f"quarantined        {EVENTS // BAD_EVERY}" in demo.stdout
    assert f"labels             {EVENTS}" in demo.stdout

    # Every job ran as an application of the cluster, each on one core of its own.
    apps = cluster.state()["completedapps"]
    assert JOB_APPS <= {app["name"] for app in apps}, apps
    assert sum(app["name"] == "rdv-score" for app in apps) == 2
    assert all(app["cores"] <= 1 for app in apps), apps

    # The tables are where the profile put them, and the features topic's four partitions all carried records.
    monkeypatch.setenv("RDV_SHARED", str(shared))
    config = load_config(conf, "standalone")
    assert config.table("results") == f"{shared}/delta/results"
    answered = spark.read.format("delta").load(config.table("results")).where("request_id LIKE 'demo-%'")
    assert answered.count() == EVENTS
    topic = config.kafka.topics.features.name
    consumer = KafkaConsumer(**client_settings(config))
    try:
        partitions = [TopicPartition(topic, p) for p in range(4)]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    assert len(ends) == 4 and all(end > 0 for end in ends.values()), ends
