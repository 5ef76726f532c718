"""Every job's progress on disk: the last report of each of its queries in <dir>/<query>.json, which
`rdv status` and `rdv up` read, and on request every report in <history>/<query>.jsonl, which the
benchmark reads.

Each report on disk also says whether its query is `ready`: past its first micro-batches, whose
time goes to starting Python workers, loading models, creating tables and the JVM compiling
Spark's planning paths (several seconds each on two cores, against a fraction of a second once
warm). A query is ready once it ran READY_AFTER micro-batches with records in this process and
the last of them took no more than SETTLED times the fastest; then it stays ready. An idle
pipeline runs no micro-batch (rdv/heartbeat.py), so a pipeline is ready only after traffic.

The job's wait loop polls its queries once a second instead of registering a StreamingQueryListener.
A Python listener is called through py4j for every event of every query of the application, and
PySpark rebuilds each report from the JVM field by field; in an idle features job that took a fifth
of the driver's CPU (bench/README.md, "Tuning"). Polling costs one call and one JSON document per
query and second.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pyspark.sql.streaming import StreamingQuery

READY_AFTER = 3  # micro-batches with records
SETTLED = 2.0  # the last of them at most this many times the fastest


def settled(batch_ms: list[int]) -> bool:
    """Whether a query whose micro-batches with records took batch_ms, in order, is ready."""
    return len(batch_ms) >= READY_AFTER and batch_ms[-1] <= SETTLED * min(batch_ms)


class ProgressFiles:
    """Each file names the process group of the job that wrote it (`rdv up` starts each job in a
    group of its own), so that a reader can tell a killed job's stale file."""

    def __init__(self, directory: Path, history: Path | None = None):
        self.directory, self.history = directory, history
        directory.mkdir(parents=True, exist_ok=True)
        if history is not None:
            history.mkdir(parents=True, exist_ok=True)
        self._last: dict[str, dict] = {}  # query -> the last report written
        self._batch_ms: dict[str, list[int]] = {}  # query -> durations of its micro-batches with records
        self._ready: set[str] = set()

    def _write(self, name: str, state: dict) -> None:
        target = self.directory / f"{name}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps({**state, "pgid": os.getpgid(0)}))
        tmp.replace(target)  # a reader never sees half a file

    def started(self, queries: list[StreamingQuery]) -> None:
        for query in queries:
            self._write(query.name, {"name": query.name, "state": "started", "ready": False})

    def update(self, queries: list[StreamingQuery]) -> None:
        """Write the reports that came since the last call."""
        for query in queries:
            report = query.lastProgress
            if report is None:
                continue
            last = self._last.get(query.name)
            if last is not None and report.timestamp == last["timestamp"]:
                continue
            progress = json.loads(report.json)
            self._write(query.name, {**progress, "state": "running", "ready": self._settle(query.name, progress)})
            if self.history is not None:
                self._append(self.history, query, progress, last)
            self._last[query.name] = progress

    def _settle(self, name: str, progress: dict) -> bool:
        """Whether the query is ready, with this report (the module's docstring)."""
        if name in self._ready:
            return True
        if progress.get("numInputRows", 0) > 0:
            durations = self._batch_ms.setdefault(name, [])
            durations.append(progress.get("durationMs", {}).get("triggerExecution", 0))
            if settled(durations):
                self._ready.add(name)
        return name in self._ready

    def _append(self, history: Path, query: StreamingQuery, progress: dict, last: dict | None) -> None:
        """Append the new reports: the last one, and those before it that came since the last call
        (more than one micro-batch a second), from the query's recent reports."""
        new = [progress]
        if last is not None and progress["batchId"] > last["batchId"] + 1:
            new = [p for p in (json.loads(r.json) for r in query.recentProgress) if p["timestamp"] > last["timestamp"]]
        with open(history / f"{query.name}.jsonl", "a") as log:
            log.writelines(json.dumps(p) + "\n" for p in new)

    def restarting(self, name: str, error: str, failures: int, next_start_at: str) -> None:
        """A query that failed and that its job starts again on its own (jobrun.QueryKeeper)."""
        self._write(
            name,
            {
                **self._last.get(name, {"name": name}),
                "state": "restarting",
                "exception": error,
                "failures": failures,
                "next_start_at": next_start_at,
            },
        )

    def stopped(self, queries: list[StreamingQuery]) -> None:
        """The final state of each query, with its exception if it failed."""
        self.update(queries)
        for query in queries:
            error = query.exception()
            state = {
                **self._last.get(query.name, {"name": query.name}),
                "state": "failed" if error is not None else "stopped",
                "exception": str(error) if error is not None else None,
            }
            self._write(query.name, state)
