"""A single-node Apache Kafka broker (KRaft, broker and controller in one process) on 127.0.0.1.

It runs from the jars that `make jars` cached under var/jars/kafka, keeps its data under
var/kafka, and is stopped by the pid it was started with. Every call is idempotent: `up` on a
running broker only makes sure the topics exist.

With kafka.security protocol SASL_PLAINTEXT and mechanism PLAIN, its one listener takes only the
configured user, with the password from the environment: a client without them is refused. That is
what the tests use to show the jobs and the CLI connect as a secured cluster needs. TLS and SCRAM
need a broker of your own (profile: cluster).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from rdv.config import PipelineConfig
from rdv.kafka_security import client_settings, credentials, jaas_config
from rdv.operations.processes import terminate

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
"""


@dataclass(frozen=True)
class LocalBroker:
    """Where one local broker lives and how to reach it."""

    home: Path
    jar_dir: Path
    host: str
    port: int
    # The one user a SASL/PLAIN broker accepts, (username, password); None for PLAINTEXT.
    user: tuple[str, str] | None = field(default=None, repr=False)
    # How rdv's own clients connect to it (rdv.kafka_security.client_settings).
    client: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: PipelineConfig) -> LocalBroker:
        server = config.kafka.bootstrap_servers.split(",")[0].strip()
        host, _, port = server.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise RuntimeError(
                f"kafka.bootstrap_servers is {server}: the local broker only binds to 127.0.0.1 "
                "(set profile: cluster to use your own broker)"
            )
        security = config.kafka.security
        if security.protocol not in ("PLAINTEXT", "SASL_PLAINTEXT") or security.sasl_mechanism not in (None, "PLAIN"):
            raise RuntimeError(
                f"kafka.security is {security.protocol} {security.sasl_mechanism or ''}: the local broker offers "
                "PLAINTEXT or SASL_PLAINTEXT with PLAIN (set profile: cluster to use your own broker)"
            )
        var = config.path(config.paths.var)
        return cls(
            home=var / "kafka" / port,
            jar_dir=config.path(config.paths.jars) / "kafka",
            host="127.0.0.1",
            port=int(port),
            user=credentials(config),
            client=client_settings(config),
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def pid(self) -> int | None:
        """The broker's pid if it is running, else None."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
            return None  # the pid was reused by another process
        return pid

    def _listener(self) -> list[str]:
        """The client listener's settings: PLAINTEXT, or SASL_PLAINTEXT that knows one user."""
        if self.user is None:
            return [
                f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.port + 1}",
                f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ]
        username, password = self.user
        # The broker's own connections use the same user: user_<name> lists who may log in.
        login = jaas_config("PLAIN", username, password).rstrip(";") + f' user_{username}="{password}";'
        return [
            f"listeners=SASL_PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.port + 1}",
            f"advertised.listeners=SASL_PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "inter.broker.listener.name=SASL_PLAINTEXT",
            "sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.sasl_plaintext.plain.sasl.jaas.config={login}",
        ]

    def _write_config(self) -> Path:
        data = self.home / "data"
        properties = self.home / "server.properties"
        properties.touch(mode=0o600)  # it may hold the broker's one password: its owner's eyes only
        properties.chmod(0o600)
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers={self.host}:{self.port + 1}",
                    *self._listener(),
                    "controller.listener.names=CONTROLLER",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(log=self.home / "server.log"))
        return properties

    def _java(self, main: str, *args: str) -> list[str]:
        jars = list(self.jar_dir.glob("*.jar"))
        if not jars:
            raise RuntimeError(f"no broker jars under {self.jar_dir}: run `make jars`")
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home}",
            "-cp",
            f"{self.jar_dir}/*",
            main,
            *args,
        ]

    def start(self, timeout_s: float = 90.0) -> int:
        """Format the storage on first use, start the broker and wait until it answers."""
        if (pid := self.pid()) is not None:
            return pid
        with socket.socket() as probe:
            if probe.connect_ex((self.host, self.port)) == 0:
                raise RuntimeError(
                    f"{self.bootstrap} is taken by a process this broker did not start (pid file {self.pid_file}); "
                    "stop it or choose another port in kafka.bootstrap_servers"
                )
        self.home.mkdir(parents=True, exist_ok=True)
        properties = self._write_config()
        if not (self.home / "data" / "meta.properties").exists():
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    str(uuid.uuid4()).replace("-", "")[:22],
                    "-c",
                    str(properties),
                ),
                check=True,
                capture_output=True,
            )
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(properties)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the broker exited with {process.returncode}; see {self.log_file}")
            if self.answers():
                return process.pid
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the broker did not answer on {self.bootstrap} within {timeout_s:.0f} s; see {self.log_file}"
        )

    def answers(self) -> bool:
        try:
            admin = KafkaAdminClient(**{**self.client, "bootstrap_servers": self.bootstrap}, request_timeout_ms=3000)
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker by its pid; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        terminate({"broker": pid}, timeout_s, group=False)
        self.pid_file.unlink(missing_ok=True)
        return True


def ensure_topics(connection: dict, topics: list[tuple[str, int]]) -> list[str]:
    """Create the topics that do not exist yet, through a client made with connection
    (rdv.kafka_security.client_settings); returns the names created."""
    admin = KafkaAdminClient(**connection, request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in missing]
    finally:
        admin.close()


def pipeline_topics(config: PipelineConfig) -> list[tuple[str, int]]:
    return [(t.name, t.partitions) for t in config.kafka.topics.all()]
