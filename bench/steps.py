"""One offered load of a scenario: send it for a while, let the pipeline drain, and turn the samples
into the step's figures (bench/README.md says what each one means)."""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from bench.app import HOP_TOPICS
from bench.load import Load, Sent, latencies, model_costs
from bench.measure import ProgressLogs, Sample, Sampler, epoch, query_name, residual_lags
from bench.report import own_costs
from jobs import decide, decoy, featurize, record
from rdv.config import PipelineConfig
from rdv.operations import runner
from rdv.operations.supervisor import Job

# A lag is bounded when it grows by less than this share of its input rate over the judged window.
GROWTH_TOLERANCE = 0.05
WARM_UP = 0.25  # the first quarter of a step: batches that saw the load change are not judged
# Drained: nothing left but the heartbeats that arrive every second (a query on a 10 s trigger sees ~10).
DRAINED_LAG = 50


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
        for query, reports in logs.reports.items():
            batches = [r for r in reports if since <= epoch(r["timestamp"]) < until and r.get("numInputRows", 0) > 0]
            if not batches:
                continue
            durations = [r["durationMs"]["triggerExecution"] / 1000 for r in batches]
            stages[query_name(logs, query, len(progress))] = {
                "batches": len(batches),
                "batch_p50_s": round(statistics.median(durations), 3),
                "batch_p95_s": round(float(np.percentile(durations, 95)), 3),
                "rows_per_batch": round(statistics.mean(r["numInputRows"] for r in batches)),
                "mean_phase_ms": {
                    k: round(statistics.mean(r["durationMs"].get(k, 0) for r in batches))
                    for k in batches[0]["durationMs"]
                    if k != "triggerExecution"
                },
            }
    return stages


def _growth(
    sampler: Sampler, outputs: tuple[str, ...], raw_topic: str, before: Sample, since: float, until: float, rate: float
) -> tuple[dict[str, float | None], dict[str, float]]:
    """How fast each lag grew over [since, until] (records/s), and how fast it may grow and still
    count as bounded: the end-to-end lag (events sent minus requests out) and each query's."""
    window = [s for s in sampler.samples if since <= s.t <= until]
    raw_base, out_base = _total(before.ends, [raw_topic]), _total(before.ends, outputs)
    e2e = [
        (s.t, _total(s.ends, [raw_topic]) - raw_base - (_total(s.ends, outputs) - out_base) / len(outputs))
        for s in window
    ]
    growth, limits = {"end-to-end": _slope(e2e)}, {"end-to-end": GROWTH_TOLERANCE * rate}
    times = np.array([s.t for s in sampler.samples])
    arrived = {
        topic: np.array([sum(s.ends.get(topic, {}).values()) for s in sampler.samples])
        for topic in sampler.samples[-1].ends
    }
    for logs in sampler.progress:
        for query, reports in logs.reports.items():
            points = [p for p in residual_lags(reports, times, arrived) if since <= p[0] <= until]
            name = query_name(logs, query, len(sampler.progress))
            growth[name] = _slope([(t, lag) for t, lag, _ in points])
            if len(points) > 1:  # the query's own input rate
                limits[name] = (
                    GROWTH_TOLERANCE * (points[-1][2] - points[0][2]) / max(points[-1][0] - points[0][0], 1e-9)
                )
    return growth, limits


def _drain(
    sampler: Sampler, outputs: tuple[str, ...], out_base: int, expected: int, after: float, drain_s: float, healthy
) -> float | None:
    """When every request was out and every query had read its topics, or None after drain_s."""
    deadline = time.time() + drain_s
    while time.time() < deadline:
        now = sampler.samples[-1]
        if (
            now.t > after
            and _total(now.ends, outputs) - out_base >= expected
            and max(now.lags.values(), default=0) <= DRAINED_LAG
        ):
            return now.t
        healthy()
        time.sleep(1)
    return None


def _latencies(bootstrap: str, outputs: tuple[str, ...], sent: Sent, prefix: str) -> dict[str, np.ndarray]:
    by_reason: dict[str, np.ndarray] = {}
    for topic in outputs:
        for reason, values in latencies(
            bootstrap, topic, int(sent.started * 1000), int(sent.ended * 1000) + 1, prefix
        ).items():
            by_reason[reason] = np.concatenate([by_reason.get(reason, np.array([])), values])
    return by_reason


def run_step(
    load: Load,
    sampler: Sampler,
    outputs: tuple[str, ...],
    bootstrap: str,
    raw_topic: str,
    rate: int,
    seconds: float,
    drain_s: float,
    prefix: str,
    echo,
    healthy,
    costs_topics: tuple[str, ...] = (),
) -> dict:
    """Send `rate` events/s for `seconds`, wait (at most drain_s) until every output is out and
    every query has read everything, and measure. healthy() raises when an application failed."""
    before = sampler.sample()
    sent = load.send(rate, seconds, prefix)
    healthy()
    at_end = sampler.sample()
    out_base, expected = _total(before.ends, outputs), sent.events * len(outputs)
    drained_at = _drain(sampler, outputs, out_base, expected, at_end.t, drain_s, healthy)
    after = sampler.sample()

    growth, limits = _growth(sampler, outputs, raw_topic, before, sent.started + WARM_UP * seconds, at_end.t, sent.rate)
    growing = sorted(q for q, g in growth.items() if g is not None and g > limits.get(q, 0))
    bounded = not growing and drained_at is not None
    by_reason = _latencies(bootstrap, outputs, sent, prefix)
    out_count = _total(after.ends, outputs) - out_base
    cpu_s, span, per_k = at_end.app_cpu_s - before.app_cpu_s, at_end.t - before.t, 1000 / max(sent.events, 1)
    models = {m: c for topic in costs_topics for m, c in model_costs(bootstrap, topic, sent.started, after.t).items()}
    peak_mib = round(max(s.app_rss for s in sampler.samples if before.t <= s.t <= after.t) / 2**20)
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
        "latency_s": _percentiles(np.concatenate(list(by_reason.values())) if by_reason else np.array([])),
        "latency_by_reason_s": {r: _percentiles(v) for r, v in sorted(by_reason.items())} if len(by_reason) > 1 else {},
        "cpu_s_per_1k": round(cpu_s * per_k, 3),
        "cpu_cores": round(cpu_s / span, 2),
        "broker_cpu_s_per_1k": round((at_end.broker_cpu_s - before.broker_cpu_s) * per_k, 3),
        "generator_cpu_s_per_1k": round(sent.cpu_s * per_k, 3),
        "peak_rss_mib": peak_mib,
        "peak_rss_mib_per_1k_rps": round(peak_mib * 1000 / rate),
        "stages": _stages(sampler.progress, sent.started, sent.ended),
        "models": models,
    }
    latency = step["latency_s"]
    echo(
        f"  {rate}/s: sent {sent.rate:.0f}/s, {out_count}/{expected} out, "
        f"{'bounded' if bounded else 'NOT bounded (' + ', '.join(growing or ['no drain']) + ')'}, "
        f"p50 {latency['p50']} s, p99 {latency['p99']} s, {step['cpu_s_per_1k']} CPU s per 1,000"
    )
    if models:
        measured_by = next(iter(models.values()))["measured_by"]
        echo(f"    each model's own CPU s per 1,000 (rdv.costs, by {measured_by}): {own_costs(step)}")
    return step


def start_apps(configs: dict[str, PipelineConfig], apps, echo, timeout_s: float = 300.0) -> list[int]:
    """Run each application as `rdv up` runs a job, under its config's supervisor, and wait until
    its queries run; the applications' pids."""
    names = {
        "hops": tuple(f"hop-{i}" for i in range(1, len(HOP_TOPICS) + 1)),
        "features": featurize.QUERIES,
        "decoy": decoy.QUERIES,
        "rendezvous": decide.QUERIES,
        "record": record.QUERIES,
    }
    pids = []
    for i, app in enumerate(apps):
        config = configs[app.pipeline]
        queries = tuple(q for job in app.jobs for q in names.get(job, (f"score-{job.partition(':')[2]}",)))
        job = Job(
            f"app-{i}",
            [sys.executable, "-m", "bench.app", "--conf", str(config.conf_dir), "--jobs", *app.jobs],
            queries,
            config.supervisor.recording_nice if app.recording else 0,
        )
        if runner.supervisor_pid(config) is None:
            runner.start_supervisor(config)
        runner.add_jobs(config, [job])
        pids.append(runner.wait_running(config, [job], timeout_s, echo=lambda *_: None)[job.name])
    echo(f"  {sum(len(a.jobs) for a in apps)} jobs running in {len(apps)} application(s)")
    return pids
