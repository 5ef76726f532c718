"""kafka.security: checked at load, and the same settings for Spark's Kafka client and kafka-python."""

from __future__ import annotations

import pytest

from rdv.config import ConfigError
from rdv.kafka_security import client_settings, spark_options
from tests.helpers import make_config

SASL = {
    "protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "username_env": "RDV_U",
    "password_env": "RDV_P",
    "ca_file": "certs/ca.pem",
}


@pytest.mark.parametrize(
    "security, error",
    [
        ({"protocol": "SASL_PLAINTEXT"}, "kafka.security: Value error, protocol SASL_PLAINTEXT needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN"}, "need a SASL protocol, not PLAINTEXT"),
        (
            {
                "protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "username_env": "U",
                "password_env": "not a name",
            },
            "kafka.security.password_env",
        ),
        (
            {
                "protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "username_env": "U",
                "password_env": "P",
                "ca_file": "ca.pem",
            },
            "need SSL or SASL_SSL",
        ),
        ({"protocol": "TLS"}, "kafka.security.protocol"),
    ],
)
def test_inconsistent_settings_fail_at_load_naming_the_file_and_field(tmp_path, security, error):
    with pytest.raises(ConfigError, match="pipeline.yaml") as raised:
        make_config(tmp_path, kafka={"security": security})
    assert error in str(raised.value)


def test_both_clients_get_the_same_credentials_from_the_environment(tmp_path, monkeypatch):
    config = make_config(tmp_path, kafka={"security": SASL})
    monkeypatch.setenv("RDV_U", "svc-rdv")
    monkeypatch.setenv("RDV_P", 'p"w\\d')
    options = spark_options(config)
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="svc-rdv" password="p\\"w\\\\d";'
    )
    assert options["kafka.ssl.truststore.type"] == "PEM"
    assert options["kafka.ssl.truststore.location"] == str(config.root / "certs" / "ca.pem")
    client = client_settings(config)
    assert client == {
        "bootstrap_servers": config.kafka.bootstrap_servers,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-rdv",
        "sasl_plain_password": 'p"w\\d',
        "ssl_cafile": str(config.root / "certs" / "ca.pem"),
    }


def test_a_missing_secret_names_the_field_and_the_variable(tmp_path, monkeypatch):
    config = make_config(tmp_path, kafka={"security": SASL})
    monkeypatch.setenv("RDV_U", "svc-rdv")
    monkeypatch.delenv("RDV_P", raising=False)
    with pytest.raises(
        ConfigError,
        match=r"pipeline.yaml: kafka.security.password_env: the environment variable "
        r"RDV_P is not set",
    ):
        client_settings(config)


def test_plaintext_needs_nothing(tmp_path):
    config = make_config(tmp_path)
    assert spark_options(config) == {"kafka.security.protocol": "PLAINTEXT"}
    assert client_settings(config) == {
        "bootstrap_servers": config.kafka.bootstrap_servers,
        "security_protocol": "PLAINTEXT",
    }
