"""Profiles: pipeline.yaml is the local profile; another profile's file overrides its settings,
variables come from the environment, and every mistake names its file and field."""

from __future__ import annotations

import shutil

import pytest

from rdv.config import ConfigError, load_config
from rdv.profiles import interpolate, overlay
from tests.helpers import REPO

CLUSTER_ENV = {
    "RDV_KAFKA_BOOTSTRAP_SERVERS": "kafka-1.internal:9093,kafka-2.internal:9093",
    "RDV_TABLES": "s3a://lake/rdv/delta/",
    "RDV_CHECKPOINTS": "s3a://lake/rdv/checkpoints",
    "MLFLOW_TRACKING_URI": "https://mlflow.internal",
    "RDV_SPARK_MASTER": "spark://spark-master.internal:7077",
}


@pytest.fixture
def conf(tmp_path):
    target = tmp_path / "conf"
    shutil.copytree(REPO / "conf", target)
    return target


@pytest.fixture
def cluster_env(monkeypatch):
    monkeypatch.delenv("RDV_PROFILE", raising=False)
    for name, value in CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)


def test_mappings_merge_key_by_key_and_values_and_lists_replace():
    base = {
        "kafka": {"bootstrap_servers": "a:1", "topics": {"raw": {"name": "rdv.raw", "partitions": 2}}},
        "compare": {"metrics": ["roc_auc", "accuracy"]},
    }
    merged = overlay(base, {"kafka": {"topics": {"raw": {"partitions": 12}}}, "compare": {"metrics": ["rmse"]}})
    assert merged == {
        "kafka": {"bootstrap_servers": "a:1", "topics": {"raw": {"name": "rdv.raw", "partitions": 12}}},
        "compare": {"metrics": ["rmse"]},
    }
    assert base["kafka"]["topics"]["raw"]["partitions"] == 2  # the default is left as it was


def test_variables_come_from_the_environment_or_their_default(tmp_path):
    data = {"a": "${HOST}:${PORT:-9092}", "b": ["${PORT:-1}"], "c": 3, "d": "$HOME stays"}
    assert interpolate(data, tmp_path / "p.yaml", environ={"HOST": "k1"}) == {
        "a": "k1:9092",
        "b": ["1"],
        "c": 3,
        "d": "$HOME stays",
    }
    with pytest.raises(ValueError, match=r"p.yaml: b\[0\]: the environment variable PORT is not set"):
        interpolate({"b": ["${PORT}"]}, tmp_path / "p.yaml", environ={})


def test_the_shipped_cluster_profile_loads_over_the_local_one(cluster_env):
    local = load_config(REPO / "conf")
    cluster = load_config(REPO / "conf", "cluster")
    assert (local.profile, cluster.profile) == ("local", "cluster")
    assert cluster.kafka.bootstrap_servers == CLUSTER_ENV["RDV_KAFKA_BOOTSTRAP_SERVERS"]
    assert cluster.kafka.topics.features.name == local.kafka.topics.features.name == "rdv.features"
    assert (local.kafka.topics.features.partitions, cluster.kafka.topics.features.partitions) == (1, 12)
    assert cluster.kafka.security.protocol == "SASL_SSL" and cluster.kafka.security.password_env == "RDV_KAFKA_PASSWORD"
    assert cluster.table("scores") == "s3a://lake/rdv/delta/scores"  # a URI is kept as written
    assert cluster.checkpoint("features") == "s3a://lake/rdv/checkpoints/features"
    assert cluster.tracking_uri == "https://mlflow.internal"
    assert cluster.spark.master == "spark://spark-master.internal:7077"
    assert cluster.spark.conf["spark.cores.max"] == "4"
    assert cluster.rendezvous == local.rendezvous and cluster.models == local.models
    assert cluster.conf_args[-2:] == ["--profile", "cluster"]


def test_the_profile_comes_from_the_argument_the_environment_or_pipeline_yaml(conf, cluster_env, monkeypatch):
    monkeypatch.setenv("RDV_PROFILE", "cluster")
    assert load_config(conf).profile == "cluster"
    assert load_config(conf, "local").profile == "local"  # the argument wins
    monkeypatch.delenv("RDV_PROFILE")
    text = (conf / "pipeline.yaml").read_text()
    (conf / "pipeline.yaml").write_text(text.replace("profile: local", "profile: cluster"))
    assert load_config(conf).kafka.topics.raw.partitions == 12


def test_a_conf_that_names_its_own_profile_loads_the_same_in_the_jobs_it_starts(conf):
    """pipeline.yaml with `profile: cluster` and the cluster's settings in it, no profile file: the
    supervisor and every job get --profile cluster (conf_args) and must load what their parent did."""
    (conf / "profiles" / "cluster.yaml").unlink()
    text = (conf / "pipeline.yaml").read_text()
    (conf / "pipeline.yaml").write_text(text.replace("profile: local", "profile: cluster"))
    parent = load_config(conf)
    child = load_config(conf, parent.conf_args[parent.conf_args.index("--profile") + 1])
    assert (parent.profile, child.profile) == ("cluster", "cluster")
    assert child.kafka == parent.kafka and child.paths == parent.paths
    with pytest.raises(ConfigError, match=r"profiles/staging.yaml: no such profile"):
        load_config(conf, "staging")


def test_a_missing_variable_or_profile_and_a_bad_setting_name_their_file(conf, cluster_env, monkeypatch):
    monkeypatch.delenv("RDV_TABLES")
    with pytest.raises(ConfigError, match=r"profiles/cluster.yaml: paths.tables: the environment variable RDV_TABLES"):
        load_config(conf, "cluster")
    monkeypatch.setenv("RDV_TABLES", "s3a://lake/rdv/delta")
    with pytest.raises(ConfigError, match=r"profiles/staging.yaml: no such profile \(profiles here: cluster, local\)"):
        load_config(conf, "staging")
    profile = conf / "profiles" / "cluster.yaml"
    profile.write_text(profile.read_text().replace("ui: true", "ui: sometimes"))
    with pytest.raises(ConfigError, match=r"profiles/cluster.yaml: spark.ui: Input should be a valid boolean"):
        load_config(conf, "cluster")
    profile.write_text(profile.read_text().replace("ui: sometimes", "ui: true\n  profile: local"))
    with pytest.raises(ConfigError, match=r"profiles/cluster.yaml: spark.profile: unknown field"):
        load_config(conf, "cluster")
    profile.write_text("profile: local\n")
    with pytest.raises(ConfigError, match=r"profiles/cluster.yaml: profile: a profile is named by its file"):
        load_config(conf, "cluster")
    # A bad setting of pipeline.yaml is still pipeline.yaml's, with a profile over it.
    profile.write_text("spark: {ui: true}\n")
    pipeline = conf / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text().replace("trigger: 1500 milliseconds", "trigger: soon"))
    with pytest.raises(ConfigError, match=r"/pipeline.yaml: spark.trigger: Value error, 'soon' is not a duration"):
        load_config(conf, "cluster")
