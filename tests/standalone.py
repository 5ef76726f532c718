"""A Spark standalone cluster of local processes: one master and its workers, started from the
installed pyspark distribution on 127.0.0.1, stopped by pid."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pyspark

from rdv.operations.processes import terminate

SPARK_HOME = Path(pyspark.__file__).parent
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneCluster:
    """`workers` workers of `cores` cores and `memory` each. A worker may offer more cores than the
    host has: each job holds one for as long as it runs, most of them waiting for their trigger."""

    def __init__(self, work: Path, workers: int = 2, cores: int = 3, memory: str = "3g"):
        self.work, self.workers, self.cores, self.memory = work, workers, cores, memory
        self.port, self.ui_port = free_port(), free_port()
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "256m",
            "SPARK_LOG_DIR": str(self.work / "logs"),
            # The workers' own JVMs are small; their executors get the jobs' memory.
            "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=false",
        }

    def start(self, timeout_s: float = 120) -> StandaloneCluster:
        self.work.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "master", MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port)
        )
        self._wait(lambda state: True, timeout_s, "the master to start")
        for i in range(self.workers):
            self._spawn(
                f"worker-{i}",
                WORKER_CLASS,
                self.url,
                "--host",
                "127.0.0.1",
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--webui-port",
                str(free_port()),
                "--work-dir",
                str(self.work / f"worker-{i}"),
            )
        self._wait(
            lambda state: state.get("aliveworkers") == self.workers, timeout_s, f"{self.workers} workers to register"
        )
        return self

    def state(self) -> dict:
        """The master's view: workers, running and completed applications (its /json page)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
            return json.load(response)

    def stop(self) -> None:
        # Workers first: they kill their executors.
        terminate({str(p.pid): p.pid for p in reversed(self.processes)}, 30)
        for process in self.processes:
            process.wait()

    def _spawn(self, name: str, main_class: str, *args: str) -> None:
        log = open(self.work / f"{name}.log", "ab")
        self.processes.append(
            subprocess.Popen(
                [str(SPARK_HOME / "bin" / "spark-class"), main_class, *args],
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a process of the cluster exited while waiting for {what}: see {self.work}/*.log")
            try:
                if ready(self.state()):
                    return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"waited {timeout_s:.0f} s for {what}: see {self.work}/*.log")
