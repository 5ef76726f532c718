"""What the benchmark samples once a second while a scenario runs: the CPU time and memory of its
process trees, and every query's consumer lag, from its progress reports and the topics' offsets."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil

from bench.load import Offsets


class ProcessTree:
    """A process and all its descendants (spark-submit's JVM, its Python workers)."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)

    def _processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self) -> tuple[float, int]:
        """(CPU seconds so far, resident bytes now). A child that ended and was reaped is in its
        parent's children_* times, so the sum never goes back."""
        cpu, rss = 0.0, 0
        for process in self._processes():
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu += times.user + times.system + times.children_user + times.children_system
                    rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return cpu, rss

    def resident_by_program(self) -> dict[str, int]:
        """Resident bytes now per program name (java, python3.11): where a job's memory is."""
        out: dict[str, int] = {}
        for process in self._processes():
            try:
                with process.oneshot():
                    out[process.name()] = out.get(process.name(), 0) + process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return out


def epoch(timestamp: str) -> float:
    """A progress report's timestamp (when its micro-batch started) in epoch seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _kafka_offsets(offset) -> dict[str, dict[int, int]]:
    if isinstance(offset, str):
        offset = json.loads(offset)
    if not isinstance(offset, dict):
        return {}  # a Delta source's offset
    return {
        topic: {int(p): int(o) for p, o in partitions.items()}
        for topic, partitions in offset.items()
        if isinstance(partitions, dict)
    }


@dataclass
class ProgressLogs:
    """The progress reports bench.app appends to <dir>/<query>.jsonl, read as they grow."""

    directory: Path
    reports: dict[str, list[dict]] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict)

    @property
    def app(self) -> str:
        """The application's var/ directory name (<var>/run/progress-log), to tell two apart."""
        return self.directory.parent.parent.name

    def read(self) -> None:
        for path in sorted(self.directory.glob("*.jsonl")):
            with open(path) as log:
                log.seek(self._positions.get(path.stem, 0))
                lines = log.readlines()
                if lines and not lines[-1].endswith("\n"):
                    lines.pop()  # being written; read it next time
                self._positions[path.stem] = self._positions.get(path.stem, 0) + sum(len(line) for line in lines)
            self.reports.setdefault(path.stem, []).extend(json.loads(line) for line in lines)

    def consumed(self) -> dict[str, dict[str, dict[int, int]]]:
        """query -> topic -> partition -> the offset its last finished micro-batch read up to."""
        positions = {}
        for query, reports in self.reports.items():
            if reports:
                positions[query] = {}
                for source in reports[-1].get("sources", []):
                    positions[query].update(_kafka_offsets(source.get("endOffset")))
        return positions


def lags(consumed: dict[str, dict[str, dict[int, int]]], ends: dict[str, dict[int, int]]) -> dict[str, int]:
    """query -> records on its topics that it has not processed yet."""
    return {
        query: sum(
            max(0, ends.get(topic, {}).get(p, 0) - offset)
            for topic, partitions in topics.items()
            for p, offset in partitions.items()
        )
        for query, topics in consumed.items()
        if topics
    }


def _read_up_to(report: dict) -> dict[str, dict[int, int]]:
    offsets = {}
    for source in report.get("sources", []):
        offsets.update(_kafka_offsets(source.get("endOffset")))
    return offsets


def residual_lags(
    reports: list[dict], times: np.ndarray, arrived: dict[str, np.ndarray]
) -> list[tuple[float, float, float]]:
    """(end of a micro-batch, records on its topics not yet read when it ended, records that had
    arrived on them by then) for each micro-batch that read Kafka. `arrived` holds each topic's
    total end offset at `times`, interpolated in between.

    Taken at batch ends, a query's lag has no saw-tooth from its trigger: a query that keeps up
    leaves what arrived while its batch ran, at any load; one that falls behind leaves more each time."""
    points = []
    for report in reports:
        read_up_to = _read_up_to(report)
        if not read_up_to or any(topic not in arrived for topic in read_up_to):
            continue
        ended = epoch(report["timestamp"]) + report["durationMs"]["triggerExecution"] / 1000
        total = sum(float(np.interp(ended, times, arrived[topic])) for topic in read_up_to)
        points.append((ended, total - sum(sum(p.values()) for p in read_up_to.values()), total))
    return points


@dataclass
class Sample:
    t: float
    app_cpu_s: float
    app_rss: int
    broker_cpu_s: float
    ends: dict[str, dict[int, int]]  # topic -> partition -> end offset
    lags: dict[str, int]  # query -> records not yet read


def query_name(logs: ProgressLogs, query: str, apps: int) -> str:
    return f"{logs.app}/{query}" if apps > 1 else query


@dataclass
class Sampler:
    """Samples once a second on a thread of its own, and whenever asked, until closed."""

    apps: list[ProcessTree]
    broker: ProcessTree
    offsets: Offsets
    progress: list[ProgressLogs]
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()  # the Kafka client and the log positions are not thread-safe
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> Sample:
        with self._lock:
            cpu, rss = 0.0, 0
            for tree in self.apps:
                tree_cpu, tree_rss = tree.sample()
                cpu, rss = cpu + tree_cpu, rss + tree_rss
            ends = self.offsets.by_partition()
            lag = {}
            for logs in self.progress:
                logs.read()
                lag.update({query_name(logs, q, len(self.progress)): n for q, n in lags(logs.consumed(), ends).items()})
            sample = Sample(time.time(), cpu, rss, self.broker.sample()[0], ends, lag)
            self.samples.append(sample)
            return sample

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
