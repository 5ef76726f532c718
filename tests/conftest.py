"""Shared fixtures: one SparkSession and one real local Kafka broker for the whole run; and the
order of the run: the tiers one after the other, a tier with a failure stopping the run.

The broker listens on its own port (not the demo's), keeps its data under the run's temp
directory, and is stopped by its pid when the run ends. Each test gets its own topics,
checkpoints and tables through its own config.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from features.personal_key import KEY_VARIABLE
from rdv.demo.train import train_demo_models
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import LocalBroker, ensure_topics, pipeline_topics
from rdv.spark import build_session
from tests.helpers import make_config

# The jobs hash personal data under this run's own key, as a user's deployment would under theirs.
os.environ.setdefault(KEY_VARIABLE, secrets.token_hex(32))

# Cheapest first: a broken unit test shows in minutes, not after the end-to-end tests' forty.
TIERS = ("unit", "integration", "e2e")
_HERE = Path(__file__).parent
_failed_tiers: set[str] = set()


def _tier(item: pytest.Item) -> str:
    return Path(item.path).relative_to(_HERE).parts[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers in TIERS' order; within a tier, the files' own order (a stable sort keeps each
    module's tests together, as its module-scoped fixtures need)."""
    items.sort(key=lambda item: TIERS.index(_tier(item)) if _tier(item) in TIERS else len(TIERS))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    if report.failed:
        _failed_tiers.add(_tier(item))
    return report


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """At a tier's last test, stop the run if the tier had a failure: the next tiers are slower,
    and their results would be noise until it is fixed."""
    tier = _tier(item)
    if tier in _failed_tiers and nextitem is not None and _tier(nextitem) != tier:
        item.session.shouldstop = f"the {tier} tier failed; the tiers after it did not run"


@pytest.fixture(scope="session")
def base_config(tmp_path_factory):
    return make_config(tmp_path_factory.mktemp("session"))


@pytest.fixture(scope="session")
def spark(base_config):
    session = build_session(base_config, "rdv-tests")
    yield session
    for query in session.streams.active:
        query.stop()
    session.stop()


@pytest.fixture(scope="session")
def broker(base_config):
    local = LocalBroker.from_config(base_config)
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def registry(base_config, spark):
    """A real MLflow registry (sqlite) with the demo's champion and challenger, trained once."""
    train_demo_models(spark, base_config, rows=4000)
    return base_config.tracking_uri


@pytest.fixture
def config(tmp_path, broker, registry):
    """A config of this test's own: its topics exist on the broker, its paths are under tmp_path,
    its models are in the session's registry."""
    # The recorders on a short trigger: a test waits for their micro-batches (processAllAvailable
    # waits for the next trigger), where the shipped 30 s spares a loaded pipeline's cores.
    test_config = make_config(tmp_path, mlflow={"tracking_uri": registry}, spark={"table_trigger": "2 seconds"})
    ensure_topics(client_settings(test_config), pipeline_topics(test_config))
    return test_config
