"""The benchmark's confs, broker and models: everything a scenario runs on, under var/bench/.

Each scenario gets a conf of its own (the shipped conf/ with the benchmark's broker, paths under
its work directory, and any --set overrides) and a fresh broker, so no scenario reads another's
records. The models are the demo's, trained once into var/bench/mlflow and kept between runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bench.app import HOP_TOPICS
from bench.scenarios import B_PREFIX, Scenario
from rdv.config import PipelineConfig, load_config
from rdv.demo.train import demo_models_registered
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import LocalBroker, ensure_topics, pipeline_topics

ROOT = Path(__file__).resolve().parent.parent
MLFLOW = ROOT / "var" / "bench" / "mlflow"
REGISTRY = f"sqlite:///{MLFLOW / 'mlflow.db'}"
CHALLENGERS = 3


# Settings that are maps of their own keys, which have dots in them (Spark's, Kafka's).
_KEYED = (("spark", "conf"), ("kafka", "producer"), ("kafka", "consumer"), ("kafka", "options"))


def _set(data: dict, dotted: str, value: str) -> None:
    """--set spark.trigger="500 milliseconds": a value into the pipeline.yaml mapping, by its path;
    under spark.conf, kafka.producer, kafka.consumer and kafka.options the rest of the path is one key, and the
    value stays a string."""
    keys = dotted.split(".")
    keyed = tuple(keys[:2]) in _KEYED and len(keys) > 2
    if keyed:
        keys = [*keys[:2], ".".join(keys[2:])]
    target = data
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value if keyed else yaml.safe_load(value)


def write_conf(
    conf: Path,
    var: Path,
    port: int,
    overrides: list[str],
    topic_prefix: str = "rdv",
    registry: str = REGISTRY,
    shipped_models: bool = False,
) -> PipelineConfig:
    """The shipped conf/ under `conf`, pointed at the benchmark's broker, paths and registry; with
    the champion and CHALLENGERS copies of the challenger, or with shipped_models the shipped ones."""
    conf.mkdir(parents=True)
    data = yaml.safe_load((ROOT / "conf" / "pipeline.yaml").read_text())
    data["kafka"]["bootstrap_servers"] = f"127.0.0.1:{port}"
    if topic_prefix != "rdv":
        for name, topic in data["kafka"]["topics"].items():
            if name != "raw":
                topic["name"] = topic["name"].replace("rdv.", f"{topic_prefix}.", 1)
        data["kafka"]["topics"].setdefault("heartbeats", {"name": f"{topic_prefix}.heartbeats", "partitions": 1})
        data["kafka"]["topics"].setdefault("labels", {"name": f"{topic_prefix}.labels", "partitions": 1})
    data["paths"] = {
        "var": str(var),
        "jars": str(ROOT / "var" / "jars"),
        "tables": str(var / "delta"),
        "checkpoints": str(var / "checkpoints"),
    }
    data["mlflow"] = {"tracking_uri": registry, "artifact_root": str(MLFLOW / "artifacts")}
    for override in overrides:
        key, _, value = override.partition("=")
        _set(data, key, value)
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    for name in ("policy.yaml", "features.yaml"):
        shutil.copy(ROOT / "conf" / name, conf / name)
    (conf / "models").mkdir()
    if shipped_models:
        for model in (ROOT / "conf" / "models").glob("*.yaml"):
            shutil.copy(model, conf / "models" / model.name)
        return load_config(conf)
    shutil.copy(ROOT / "conf" / "models" / "champion.yaml", conf / "models" / "champion.yaml")
    for i in range(1, CHALLENGERS + 1):
        shutil.copy(ROOT / "conf" / "models" / "challenger.yaml", conf / "models" / f"challenger-{i}.yaml")
    return load_config(conf)


def scenario_confs(
    work: Path, scenario: Scenario, port: int, overrides: list[str], registry: str = REGISTRY
) -> dict[str, PipelineConfig]:
    """pipeline ("a", "b") -> its config, each with its own var/ under work."""
    pipelines = sorted({app.pipeline for app in scenario.apps})
    return {
        p: write_conf(work / f"conf-{p}", work / f"var-{p}", port, overrides, "rdv" if p == "a" else B_PREFIX, registry)
        for p in pipelines
    }


def start_broker(configs: dict[str, PipelineConfig]) -> LocalBroker:
    """A fresh broker with every topic of the scenario's pipelines, and the limit's hops."""
    first = configs["a"]
    broker = LocalBroker.from_config(first)
    broker.start()
    topics = {t for config in configs.values() for t in pipeline_topics(config)}
    ensure_topics(client_settings(first), sorted(topics | {(h, first.kafka.topics.raw.partitions) for h in HOP_TOPICS}))
    return broker


def ensure_models(work: Path, port: int, registry: str, echo) -> None:
    """Train and register the demo models into the benchmark's registry unless they are there."""
    config = write_conf(work / "conf-train", work / "var-train", port, [], registry=registry)
    if demo_models_registered(config):
        return
    echo(f"models: training the demo champion and challenger into {registry} (once)")
    rdv = Path(sys.executable).parent / "rdv"
    subprocess.run([str(rdv), "--conf", str(config.conf_dir), "train"], check=True, cwd=ROOT)
