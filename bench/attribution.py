"""Where a Spark application's CPU goes, per streaming query: from a JVM's thread dumps and its
event log. Pure parsing, so that it is tested without a JVM.

- A thread dump (`jcmd <pid> Thread.print`) gives each thread's CPU so far. Each query has a
  "stream execution thread for <name> [...]" on the driver, which plans its micro-batches, writes
  its offsets and commits and, under foreachBatch, waits for the Python function; the JIT compiler
  and the garbage collector have threads of their own.
- The event log (`spark.eventLog.enabled`) gives each task's executor CPU time, and each job's
  query (the job's `sql.streaming.queryId` property), so a task's CPU is its query's; and each
  query's progress reports, with the wall time of each phase of each micro-batch.

Neither sees the Python processes: the driver's foreachBatch functions and the Python workers
(pandas UDFs) are reported as wholes, by process.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

_THREAD = re.compile(r'^"(?P<name>[^"]*)" #(?P<id>\d+) .*?\bcpu=(?P<cpu>[\d.]+)ms')
_STREAM = re.compile(r"^stream execution thread for (?P<query>\S+) \[")

# Threads of the JVM's own, by the name they start with.
_JVM_GROUPS = (
    ("jit", ("C1 CompilerThread", "C2 CompilerThread")),
    ("gc", ("GC Thread", "G1 ", "VM Thread", "VM Periodic")),
    ("executor tasks", ("Executor task",)),
)


Threads = dict[int, tuple[str, float]]  # thread id -> (its name now, CPU seconds so far)


def thread_cpu(dump: str) -> Threads:
    """Each thread's name and CPU seconds so far, from a `jcmd <pid> Thread.print` dump. Threads are
    told apart by id: Spark renames its executor threads with each task they run."""
    threads: Threads = {}
    for line in dump.splitlines():
        if match := _THREAD.match(line):
            threads[int(match["id"])] = (match["name"], float(match["cpu"]) / 1000)
    return threads


def thread_groups(before: Threads, after: Threads) -> dict[str, float]:
    """CPU seconds between two dumps by group: `stream <query>` for each query's driver thread,
    jit, gc, executor tasks, and other. A thread that ended between them is not counted."""
    groups: dict[str, float] = defaultdict(float)
    for thread, (name, cpu) in after.items():
        spent = cpu - before.get(thread, (name, 0.0))[1]
        if match := _STREAM.match(name):
            groups[f"stream {match['query']}"] += spent
            continue
        group = next((g for g, prefixes in _JVM_GROUPS if name.startswith(prefixes)), "other")
        groups[group] += spent
    return dict(groups)


def _millis(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


@dataclass
class QueryActivity:
    """One query's micro-batches in a window: how many, their executor CPU, their wall time by phase."""

    batches: int = 0
    task_cpu_s: float = 0.0
    phase_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rows: int = 0

    def mean_phases(self) -> dict[str, float]:
        """Mean milliseconds per micro-batch of each phase, largest first."""
        means = {phase: sum(values) / len(values) for phase, values in self.phase_ms.items()}
        return dict(sorted(means.items(), key=lambda kv: -kv[1]))


def event_log_lines(directory: Path) -> Iterable[str]:
    """Every line of every uncompressed event log file under directory."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("appstatus")):
        with open(path, errors="replace") as log:
            yield from log


def query_activity(lines: Iterable[str], start_ms: float, end_ms: float) -> dict[str, QueryActivity]:
    """Query name -> its activity between start_ms and end_ms (epoch milliseconds): the micro-batches
    whose progress report starts in the window, and the CPU of the tasks launched in it."""
    names: dict[str, str] = {}  # query id -> name
    stage_query: dict[int, str] = {}  # stage id -> query id
    activity: dict[str, QueryActivity] = defaultdict(QueryActivity)
    task_cpu: dict[str, float] = defaultdict(float)  # query id -> executor CPU seconds
    for line in lines:
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        kind = event.get("Event", "")
        if kind.endswith("QueryProgressEvent"):
            progress = event["progress"]
            names[progress["id"]] = progress["name"]
            if start_ms <= _millis(progress["timestamp"]) < end_ms:
                query = activity[progress["name"]]
                query.batches += 1
                query.rows += sum(source.get("numInputRows", 0) for source in progress.get("sources", []))
                for phase, ms in progress.get("durationMs", {}).items():
                    query.phase_ms[phase].append(ms)
        elif kind.endswith("QueryStartedEvent"):
            names[event["id"]] = event["name"]
        elif kind == "SparkListenerJobStart":
            query_id = (event.get("Properties") or {}).get("sql.streaming.queryId")
            if query_id:
                for stage in event.get("Stage IDs", []):
                    stage_query[stage] = query_id
        elif kind == "SparkListenerTaskEnd":
            launched = event.get("Task Info", {}).get("Launch Time", 0)
            query_id = stage_query.get(event.get("Stage ID"))
            if query_id and start_ms <= launched < end_ms:
                metrics = event.get("Task Metrics") or {}
                task_cpu[query_id] += (
                    metrics.get("Executor CPU Time", 0) + metrics.get("Executor Deserialize CPU Time", 0)
                ) / 1e9
    for query_id, cpu in task_cpu.items():
        activity[names.get(query_id, query_id)].task_cpu_s += cpu
    return dict(activity)
