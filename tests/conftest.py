"""Shared fixtures: one SparkSession and one real local Kafka broker for the whole run.

The broker listens on its own port (not the demo's), keeps its data under the run's temp
directory, and is stopped by its pid when the run ends. Each test gets its own topics,
checkpoints and tables through its own config.
"""
from __future__ import annotations

import os
import secrets

import pytest

from features.personal import KEY_VARIABLE
from rdv.demo.train import train_demo_models
from rdv.kafka_local import LocalBroker, ensure_topics, pipeline_topics
from rdv.kafka_security import client_settings
from rdv.spark import build_session
from tests.helpers import make_config

# The jobs hash personal data under this run's own key, as a user's deployment would under theirs.
os.environ.setdefault(KEY_VARIABLE, secrets.token_hex(32))


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
    test_config = make_config(tmp_path, mlflow={"tracking_uri": registry})
    ensure_topics(client_settings(test_config), pipeline_topics(test_config))
    return test_config
