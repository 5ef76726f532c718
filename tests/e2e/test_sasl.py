"""The pipeline on a broker that takes only authenticated clients (SASL/PLAIN on loopback): every job
and the CLI connect with the credentials that conf names by environment variable, a client without
them (or with a wrong password) is refused, and the secret is in no log, checkpoint or table."""

from __future__ import annotations

import secrets
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaTimeoutError

from rdv.commands import main as rdv
from rdv.operations import runner
from rdv.operations.kafka_local import LocalBroker
from tests.e2e.helpers import ALWAYS_IN_TIME_MS, send_and_wait
from tests.helpers import make_config

PORT = 19096
SECURITY = {
    "protocol": "SASL_PLAINTEXT",
    "sasl_mechanism": "PLAIN",
    "username_env": "RDV_TEST_KAFKA_USERNAME",
    "password_env": "RDV_TEST_KAFKA_PASSWORD",
}


def refused(**client) -> bool:
    """Whether the broker refuses a client made with these settings: it drops the connection of one
    that does not authenticate, so the client cannot bootstrap."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{PORT}", request_timeout_ms=5000, **client)
        try:
            admin.list_topics()
        finally:
            admin.close()
    except KafkaTimeoutError:
        return True
    return False


def files_holding(root: Path, secret: bytes, but: tuple[Path, ...]) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p not in but and secret in p.read_bytes()]


def test_the_pipeline_works_over_sasl_and_a_client_without_credentials_is_refused(
    spark, tmp_path, registry, monkeypatch, capsys
):
    password = secrets.token_urlsafe(24)
    monkeypatch.setenv("RDV_TEST_KAFKA_USERNAME", "rdv-test")
    monkeypatch.setenv("RDV_TEST_KAFKA_PASSWORD", password)
    # profile local: `rdv up` starts the broker with the SASL listener, and `rdv down` stops it.
    config = make_config(
        tmp_path,
        port=PORT,
        models=("champion",),
        kafka={"security": SECURITY},
        mlflow={"tracking_uri": registry},
        policy={"deadline_ms": ALWAYS_IN_TIME_MS},
        rendezvous={"max_deadline_ms": ALWAYS_IN_TIME_MS, "grace": "2 seconds"},
    )
    broker = LocalBroker.from_config(config)
    runner.up(config, ["champion"])
    try:
        send_and_wait(spark, config, "sasl", 20, ["champion"])

        assert refused()  # no credentials
        assert refused(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username="rdv-test",
            sasl_plain_password="not-" + password,
        )
        assert not refused(**{k: v for k, v in broker.client.items() if k != "bootstrap_servers"})

        # The CLI takes the same settings; without the variable it says which one is missing.
        assert (
            rdv(["--conf", str(config.conf_dir), "replay", "--events", "3", "--rate", "10", "--id-prefix", "cli"]) == 0
        )
        monkeypatch.delenv("RDV_TEST_KAFKA_PASSWORD")
        assert rdv(["--conf", str(config.conf_dir), "replay", "--events", "1"]) == 2
        assert (
            "kafka.security.password_env: the environment variable RDV_TEST_KAFKA_PASSWORD is not set"
            in capsys.readouterr().err
        )
        monkeypatch.setenv("RDV_TEST_KAFKA_PASSWORD", password)
        send_and_wait(spark, config, "cli", 3, ["champion"])
    finally:
        runner.down(config)
    assert broker.pid() is None

    # Only the broker's own config holds its password; no job log, progress file, checkpoint or table does.
    var = config.path(config.paths.var)
    assert (var / "logs" / "pipeline.log").stat().st_size > 0
    assert files_holding(var, password.encode(), but=(broker.home / "server.properties",)) == []
