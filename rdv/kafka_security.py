"""The Kafka connection settings of conf (kafka.security) as each kind of client wants them.

Spark's Kafka source and sink (the Java client) take `kafka.`-prefixed options, the CLI's and the
jobs' own kafka-python clients take keyword arguments; both come from the one `kafka.security`
section, so a job and the CLI cannot disagree on how to connect. Secrets are read from the
environment variables the section names, when a client is made, and are never written to a file
by rdv: Spark's Kafka connector redacts `sasl.jaas.config` in what it logs.
"""

from __future__ import annotations

import os

from rdv.config import ConfigError, PipelineConfig

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def secret(config: PipelineConfig, field: str) -> str:
    """The value of the environment variable that kafka.security.<field> names."""
    name = getattr(config.kafka.security, field)
    value = os.environ.get(name) if name else None
    if not value:
        raise ConfigError(
            f"{config.conf_dir / 'pipeline.yaml'}: kafka.security.{field}: the environment variable "
            f"{name} is not set (it holds the secret; the file never does)"
        )
    return value


def credentials(config: PipelineConfig) -> tuple[str, str] | None:
    """(username, password) of a SASL protocol, else None."""
    if not config.kafka.security.protocol.startswith("SASL_"):
        return None
    return secret(config, "username_env"), secret(config, "password_env")


def jaas_config(mechanism: str, username: str, password: str) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{_LOGIN_MODULES[mechanism]} required username={quoted(username)} password={quoted(password)};"


def spark_options(config: PipelineConfig) -> dict[str, str]:
    """Options of Spark's Kafka source and sink, `kafka.`-prefixed."""
    security = config.kafka.security
    options: dict[str, str] = {"kafka.security.protocol": security.protocol}
    if (login := credentials(config)) is not None:
        options["kafka.sasl.mechanism"] = security.sasl_mechanism or ""
        options["kafka.sasl.jaas.config"] = jaas_config(security.sasl_mechanism or "", *login)
    if security.ca_file is not None:
        options.update(
            {"kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": str(config.path(security.ca_file))}
        )
    if security.keystore_file is not None:
        options.update(
            {"kafka.ssl.keystore.type": "PEM", "kafka.ssl.keystore.location": str(config.path(security.keystore_file))}
        )
        if security.key_password_env:
            options["kafka.ssl.key.password"] = secret(config, "key_password_env")
    return options


def client_settings(config: PipelineConfig) -> dict:
    """Keyword arguments of a kafka-python client (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
    security = config.kafka.security
    settings: dict = {"bootstrap_servers": config.kafka.bootstrap_servers, "security_protocol": security.protocol}
    if (login := credentials(config)) is not None:
        settings.update(
            sasl_mechanism=security.sasl_mechanism, sasl_plain_username=login[0], sasl_plain_password=login[1]
        )
    if security.ca_file is not None:
        settings["ssl_cafile"] = str(config.path(security.ca_file))
    if security.keystore_file is not None:
        settings["ssl_certfile"] = str(config.path(security.keystore_file))
        if security.key_password_env:
            settings["ssl_password"] = secret(config, "key_password_env")
    return settings
