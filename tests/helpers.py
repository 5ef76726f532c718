"""Test configs: the project's own conf with per-test topics, paths and broker port."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import yaml

from rdv.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent
TEST_BROKER_PORT = 19092
# C1 alone gets the client VM's 48 MB code cache, which the one-application pipeline filled in 80 s
# of a CI run: the JVM then cannot link a method handle and its tasks fail with InternalError. The
# optimising tier's default size keeps room for it.
TEST_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
# The recorders' trigger in a test's pipeline. A test waits for the tables after each batch of
# requests it sends: on the shipped 30 s, each wait took half a trigger or more for the recorder's
# next micro-batch (the archive's and the other tables' recorders each on their own tick), and a
# test's traffic is too short for the shipped trigger's saving in CPU to matter.
TEST_TABLE_TRIGGER = "5 seconds"


def write_conf(
    root: Path,
    port: int = TEST_BROKER_PORT,
    models: tuple[str, ...] = ("champion", "challenger"),
    profile_override: str | None = None,
    spec: Path = REPO / "conf" / "features.yaml",
    **pipeline_overrides,
) -> Path:
    """A conf directory under root (var/ beside it) whose topics are unique to this call, with
    the feature spec `spec`, the shipped policy (updated by a `policy` override) and the shipped
    model configs named in models (the canary only where a test asks for it: one more model job is
    one more load on two cores)."""
    conf = root / "conf"
    (conf / "models").mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((REPO / "conf" / "pipeline.yaml").read_text())
    suffix = uuid.uuid4().hex[:8]
    data["kafka"]["bootstrap_servers"] = f"127.0.0.1:{port}"
    for topic in data["kafka"]["topics"].values():
        topic["name"] = f"{topic['name']}.{suffix}"
    data["paths"]["jars"] = str(REPO / "var" / "jars")
    if profile_override:
        data["profile"] = profile_override
    # The Great Expectations query validates the archive only where a test asks for it (a shorter
    # quality_trigger): on two cores it would slow every other test's pipeline.
    data["spark"]["quality_trigger"] = "1 hour"
    data["spark"]["table_trigger"] = TEST_TABLE_TRIGGER
    # Every Spark JVM of a test (the session, each job) is short-lived and shares two cores with
    # several others: the JIT's optimising tier and a concurrent collector cost them more than they
    # gain. The separate-jobs demo took 270 s with these and 410 s without.
    data["spark"].setdefault("conf", {})["spark.driver.extraJavaOptions"] = TEST_JAVA_OPTIONS
    policy = yaml.safe_load((REPO / "conf" / "policy.yaml").read_text())
    policy.update(pipeline_overrides.pop("policy", {}))
    for section, values in pipeline_overrides.items():
        data.setdefault(section, {}).update(values)
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data))
    (conf / "policy.yaml").write_text(yaml.safe_dump(policy))
    shutil.copy(spec, conf / "features.yaml")
    for model in models:
        shutil.copy(REPO / "conf" / "models" / f"{model}.yaml", conf / "models" / f"{model}.yaml")
    return conf


def make_config(root: Path, **overrides) -> PipelineConfig:
    return load_config(write_conf(root, **overrides))


def eventually(probe, timeout_s: float = 20.0, poll_s: float = 0.2):
    """probe()'s first truthy value, asked every poll_s until timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"not within {timeout_s} s")
