"""One scenario at its offered loads: start its applications, send each load for a while, let the
pipeline drain, and turn the samples into the step's figures (see bench/README.md for each)."""
from __future__ import annotations

import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from bench.app import HOP_TOPICS
from bench.load import Load, Offsets, latencies
from bench.measure import ProcessTree, ProgressLogs, epoch, lags, residual_lags
from jobs import decide, decoy, featurize
from rdv import runner
from rdv.config import PipelineConfig

# A lag is bounded when it grows by less than this share of the offered rate over a step's second half.
GROWTH_TOLERANCE = 0.05
WARM_UP = 0.25  # the first quarter of a step: batches that saw the load change are not judged
# Drained: nothing left but the heartbeats that arrive every second (a query on a 10 s trigger sees ~10).
DRAINED_LAG = 50


@dataclass
class Sample:
    t: float
    app_cpu_s: float
    app_rss: int
    broker_cpu_s: float
    ends: dict[str, dict[int, int]]
    lags: dict[str, int]


@dataclass
class Sampler:
    """Samples once a second on a thread of its own, until stopped."""

    apps: list[ProcessTree]
    broker: ProcessTree
    offsets: Offsets
    progress: list[ProgressLogs]
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> Sample:
        cpu, rss = 0.0, 0
        for tree in self.apps:
            c, r = tree.sample()
            cpu, rss = cpu + c, rss + r
        ends = self.offsets.by_partition()
        lag = {}
        for logs in self.progress:
            logs.read()
            lag.update({f"{logs.directory.parent.parent.name}/{q}" if len(self.progress) > 1 else q: n
                        for q, n in lags(logs.consumed(), ends).items()})
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


def _total(ends: dict[str, dict[int, int]], topics) -> int:
    return sum(sum(ends.get(t, {}).values()) for t in topics)


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    t, v = np.array(points).T
    return float(np.polyfit(t - t[0], v, 1)[0])


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"p50": None, "p95": None, "p99": None, "count": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3), "count": len(values)}


def _stages(progress: list[ProgressLogs], since: float, until: float) -> dict[str, dict]:
    """Per query, its micro-batches that started in [since, until): count, duration p50/p95, the
    mean of each phase and the rows per batch. Spark's own account of where the time goes."""
    stages = {}
    for logs in progress:
        app = logs.directory.parent.parent.name
        for query, reports in logs.reports.items():
            batches = [r for r in reports if since <= epoch(r["timestamp"]) < until and r.get("numInputRows", 0) > 0]
            if not batches:
                continue
            durations = [r["durationMs"]["triggerExecution"] / 1000 for r in batches]
            phases = {k: round(statistics.mean(r["durationMs"].get(k, 0) for r in batches))
                      for k in batches[0]["durationMs"] if k != "triggerExecution"}
            name = f"{app}/{query}" if len(progress) > 1 else query
            stages[name] = {
                "batches": len(batches), "batch_p50_s": round(statistics.median(durations), 3),
                "batch_p95_s": round(float(np.percentile(durations, 95)), 3),
                "rows_per_batch": round(statistics.mean(r["numInputRows"] for r in batches)),
                "mean_phase_ms": phases,
            }
    return stages


def run_step(load: Load, sampler: Sampler, progress: list[ProgressLogs], outputs: tuple[str, ...], bootstrap: str,
             raw_topic: str, rate: int, seconds: float, drain_s: float, prefix: str, echo, healthy) -> dict:
    """Send `rate` events/s for `seconds`, wait (at most drain_s) until every output is out and
    every query has read everything, and measure. healthy() raises when an application failed."""
    before = sampler.sample()
    sent = load.send(rate, seconds, prefix)
    healthy()
    at_end = sampler.sample()
    expected = sent.events * len(outputs)
    out_before = _total(before.ends, outputs)
    drained_at = None
    deadline = time.time() + drain_s
    while time.time() < deadline:
        now = sampler.samples[-1]
        if _total(now.ends, outputs) - out_before >= expected and now.t > at_end.t and max(now.lags.values(), default=0) <= DRAINED_LAG:
            drained_at = now.t
            break
        healthy()
        time.sleep(1)
    after = sampler.sample()
    window = [s for s in sampler.samples if sent.started + WARM_UP * seconds <= s.t <= at_end.t]
    raw_base = _total(before.ends, [raw_topic])

    # End to end: events sent minus requests out at the end of the path, against time.
    e2e = [(s.t, (_total(s.ends, [raw_topic]) - raw_base) - (_total(s.ends, outputs) - out_before) / len(outputs))
           for s in window]
    growth = {"end-to-end": _slope(e2e)}
    limits = {"end-to-end": GROWTH_TOLERANCE * sent.rate}
    times = np.array([s.t for s in sampler.samples])
    arrived = {topic: np.array([sum(s.ends.get(topic, {}).values()) for s in sampler.samples])
               for topic in sampler.samples[-1].ends}
    for logs in progress:
        app = logs.directory.parent.parent.name
        for query, reports in logs.reports.items():
            points = [p for p in residual_lags(reports, times, arrived) if window[0].t <= p[0] <= at_end.t] if window else []
            name = f"{app}/{query}" if len(progress) > 1 else query
            growth[name] = _slope([(t, lag) for t, lag, _ in points])
            if len(points) > 1:  # the query's own input rate over the window
                limits[name] = GROWTH_TOLERANCE * (points[-1][2] - points[0][2]) / max(points[-1][0] - points[0][0], 1e-9)
    growing = sorted(q for q, g in growth.items() if g is not None and g > limits.get(q, 0))
    bounded = not growing and drained_at is not None

    span = at_end.t - before.t
    per_k = 1000 / max(sent.events, 1)
    by_reason = {}
    for topic in outputs:
        for reason, values in latencies(bootstrap, topic, int(sent.started * 1000),
                                        int(sent.ended * 1000) + 1, prefix).items():
            by_reason[reason] = np.concatenate([by_reason.get(reason, np.array([])), values])
    everything = np.concatenate(list(by_reason.values())) if by_reason else np.array([])
    out_count = _total(after.ends, outputs) - out_before
    step = {
        "offered_rps": rate,
        "sent_rps": round(sent.rate, 1),
        "events": sent.events,
        "outputs": out_count,
        "complete": out_count == expected,
        "bounded": bounded,
        "growing_lags": growing,
        "lag_growth_per_s": {q: (round(g, 1) if g is not None else None) for q, g in growth.items()},
        "drain_s": round(drained_at - at_end.t, 1) if drained_at else None,
        # Requests through the whole path per second, from the first sent to the last out (or the
        # drain's end): the offered rate when bounded, what the path can do when not.
        "processed_rps": round(out_count / len(outputs) / ((drained_at or after.t) - sent.started), 1),
        "latency_s": _percentiles(everything),
        "latency_by_reason_s": {r: _percentiles(v) for r, v in sorted(by_reason.items())} if len(by_reason) > 1 else {},
        "cpu_s_per_1k": round((at_end.app_cpu_s - before.app_cpu_s) * per_k, 3),
        "cpu_cores": round((at_end.app_cpu_s - before.app_cpu_s) / span, 2),
        "broker_cpu_s_per_1k": round((at_end.broker_cpu_s - before.broker_cpu_s) * per_k, 3),
        "generator_cpu_s_per_1k": round(sent.cpu_s * per_k, 3),
        "peak_rss_mib": round(max(s.app_rss for s in sampler.samples if before.t <= s.t <= after.t) / 2**20),
        "stages": _stages(progress, sent.started, sent.ended),
    }
    lat = step["latency_s"]
    echo(f"  {rate}/s: sent {sent.rate:.0f}/s, {out_count}/{expected} out, "
         f"{'bounded' if bounded else 'NOT bounded (' + ', '.join(growing or ['no drain']) + ')'}, "
         f"p50 {lat['p50']} s, p99 {lat['p99']} s, {step['cpu_s_per_1k']} CPU s per 1,000")
    return step


def start_apps(configs: dict[str, PipelineConfig], apps, echo, timeout_s: float = 300.0) -> list[int]:
    """Launch each application as `rdv up` launches a job, and wait until its queries run."""
    names = {"hops": tuple(f"hop-{i}" for i in range(1, len(HOP_TOPICS) + 1)), "features": featurize.QUERIES,
             "decoy": decoy.QUERIES, "rendezvous": decide.QUERIES}
    pids = []
    for i, app in enumerate(apps):
        config = configs[app.pipeline]
        queries = tuple(q for job in app.jobs for q in names.get(job, (f"score-{job.partition(':')[2]}",)))
        job = runner.Job(f"app-{i}", [sys.executable, "-m", "bench.app", "--conf", str(config.conf_dir),
                                      "--jobs", *app.jobs], queries)
        pids.append(runner.launch(config, job, echo=lambda *_: None))
        runner.wait_running(config, [job], timeout_s, echo=lambda *_: None)
    echo(f"  {sum(len(a.jobs) for a in apps)} jobs running in {len(apps)} application(s)")
    return pids
