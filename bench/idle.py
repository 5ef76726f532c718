"""`make bench-idle`: what the running pipeline costs when nothing happens, and where it goes.

It starts the pipeline as `rdv up` does (the shipped conf and models; the latency path's
application and the recording's) on a broker of its own, sends a few requests so that every query has worked once (Python workers started,
models loaded, first state versions written), waits until every one is answered and the pipeline
has settled, then samples --seconds:

- the CPU of the pipeline's processes (the supervisor, each job's Python driver, JVM and Python
  workers; not the broker's), which ends the run as `idle: <C> cores with <M> models`;
- per query: its micro-batches a minute, and per micro-batch its CPU (its stream execution thread
  on the driver, from `jcmd Thread.print`, plus its tasks' executor CPU, from Spark's event log)
  and its wall time by phase (its progress reports);
- the rest: the JIT compiler, the garbage collector, other JVM threads, the Python processes.

With --rate, the same figures under a steady load of generated events sent during the sample,
for profiling a loaded pipeline the same way. Figures go to bench/results/idle-<date>T<HHMM>.json.

Usage:
    make bench-idle
    python -m bench.idle --rate 50 --set 'spark.trigger=500 milliseconds'
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
from kafka import KafkaConsumer, TopicPartition

from bench.attribution import Threads, event_log_lines, query_activity, thread_cpu, thread_groups
from bench.load import Load, latencies
from bench.setup import REGISTRY, ROOT, ensure_models, write_conf
from features.personal_key import ensure_session_key
from rdv.config import PipelineConfig
from rdv.operations import runner

WORK = ROOT / "var" / "bench"
OUT = ROOT / "bench" / "results"
PORT = 19193
EVENT_LOG = {  # read after the pipeline stopped, so its buffers are flushed
    "spark.conf.spark.eventLog.enabled": "true",
    "spark.conf.spark.eventLog.compress": "false",
}


def parser() -> argparse.ArgumentParser:
    job = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    job.add_argument("--seconds", type=float, default=60, help="how long to sample (default: 60)")
    job.add_argument(
        "--settle",
        type=float,
        default=120,
        help="seconds to wait once the warm-up's requests are answered (default: 120)",
    )
    job.add_argument("--warm-up-events", type=int, default=200, help="requests sent first, at 20/s (default: 200)")
    job.add_argument("--rate", type=float, default=0.0, help="events/s to send while sampling (default: 0, idle)")
    job.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pipeline.yaml setting, as in bench.run (repeatable)",
    )
    job.add_argument("--tag", help="a trial's name, in the results file's name")
    job.add_argument("--port", type=int, default=PORT, help=f"the broker's port (default: {PORT})")
    job.add_argument("--registry", default=REGISTRY, help="the MLflow registry with the demo models")
    job.add_argument("--out", type=Path, default=OUT, help="results directory (default: bench/results)")
    job.add_argument("--keep", action="store_true", help="keep the run's tables, checkpoints, logs and event logs")
    return job


def _processes(config: PipelineConfig) -> list[int]:
    """The pids whose trees are the pipeline: the supervisor and each job."""
    pids = list(runner.running_jobs(config).values())
    if (supervisor := runner.supervisor_pid(config)) is not None:
        pids.append(supervisor)
    return pids


def _jvms(pids: list[int]) -> list[int]:
    jvms = []
    for pid in pids:
        try:
            jvms += [c.pid for c in psutil.Process(pid).children(recursive=True) if c.name() == "java"]
        except psutil.NoSuchProcess:
            continue
    return jvms


def _dump(pid: int) -> Threads:
    done = subprocess.run(["jcmd", str(pid), "Thread.print"], capture_output=True, text=True, timeout=60)
    return thread_cpu(done.stdout)


def _cpu_by_process(pids: list[int]) -> dict[int, tuple[str, float]]:
    """pid -> (kind, CPU seconds so far) of every process in the trees: java, python drivers (the jobs'
    drivers, the supervisor) and python workers (pyspark's daemon and the workers it forks)."""
    out: dict[int, tuple[str, float]] = {}
    for pid in pids:
        try:
            processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
                kind = (
                    "java"
                    if process.name() == "java"
                    else ("python workers" if "pyspark.daemon" in " ".join(process.cmdline()) else "python drivers")
                )
                out[process.pid] = (kind, times.user + times.system)
            except psutil.NoSuchProcess:
                continue
    return out


def _cores_by_kind(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float
) -> dict[str, float]:
    """Cores per kind between two samples: what each process took between them (all of it for one
    started since); a process that ended in between (pyspark ends idle Python workers after a
    minute) is left out, so a figure errs low by what such a process took before it ended."""
    cores: dict[str, float] = {}
    for pid, (kind, cpu) in after.items():
        cores[kind] = cores.get(kind, 0.0) + (cpu - before.get(pid, (kind, 0.0))[1]) / seconds
    return cores


def _answered(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def _settle(config: PipelineConfig, args, echo) -> None:
    bootstrap, topics = config.kafka.bootstrap_servers, config.kafka.topics
    load = Load(bootstrap, topics.raw.name)
    try:
        echo(f"warm-up: {args.warm_up_events} requests at 20/s")
        load.send(20, args.warm_up_events / 20, "warm-up")
    finally:
        load.close()
    deadline = time.monotonic() + 300
    while (answered := _answered(bootstrap, topics.results.name)) < args.warm_up_events:
        runner.check_healthy(config)
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.idle: {answered} of {args.warm_up_events} warm-up requests answered in 5 minutes")
        time.sleep(2)
    pids = _processes(config)
    started, last = time.monotonic(), _cpu_by_process(pids)
    while (waited := time.monotonic() - started) < args.settle:
        time.sleep(min(15.0, args.settle - waited))
        now = _cpu_by_process(pids)
        echo(
            f"settling: {time.monotonic() - started:.0f}/{args.settle:.0f} s, "
            f"{sum(_cores_by_kind(last, now, 15).values()):.2f} cores over the last 15 s"
        )
        last = now


def sample(config: PipelineConfig, args, echo) -> dict:
    pids = _processes(config)
    jvms = _jvms(pids)
    load = Load(config.kafka.bootstrap_servers, config.kafka.topics.raw.name) if args.rate else None
    dumps_before = {jvm: _dump(jvm) for jvm in jvms}
    cpu_before, start = _cpu_by_process(pids), time.time()
    echo(f"sampling: {args.seconds:.0f} s" + (f" at {args.rate:g} events/s" if args.rate else ", idle"))
    sender = threading.Thread(target=load.send, args=(args.rate, args.seconds, "load"), daemon=True) if load else None
    if sender:
        sender.start()
    time.sleep(args.seconds)
    cpu_after, end = _cpu_by_process(pids), time.time()
    dumps_after = {jvm: _dump(jvm) for jvm in jvms}
    if sender:
        sender.join()
        load.close()
    seconds = end - start
    latency = _latency(config, start, end, int(args.rate * args.seconds)) if load else {}
    threads: dict[str, float] = {}
    for jvm in jvms:
        for group, cpu in thread_groups(dumps_before[jvm], dumps_after[jvm]).items():
            threads[group] = threads.get(group, 0.0) + cpu
    by_kind = _cores_by_kind(cpu_before, cpu_after, seconds)
    return {
        "start_ms": start * 1000,
        "end_ms": end * 1000,
        "seconds": seconds,
        "cores": sum(by_kind.values()),
        "cores_by_process": by_kind,
        "thread_cpu_s": threads,
        "latency_s": latency,
    }


def _latency(config: PipelineConfig, start: float, end: float, expected: int, wait_s: float = 60) -> dict[str, dict]:
    """Event to answer on rdv.results, by reason, of the load's requests, once answered (at most
    wait_s after the load ended): p50, p99, how many, and how many within the policy's deadline."""
    deadline_s = config.policy.deadline_ms / 1000
    until = time.monotonic() + wait_s
    while True:
        found = latencies(
            config.kafka.bootstrap_servers, config.kafka.topics.results.name, int(start * 1000), int(end * 1000), "load"
        )
        if sum(len(v) for v in found.values()) >= expected or time.monotonic() > until:
            break
        time.sleep(5)
    summary = {**found, "all": np.concatenate(list(found.values())) if found else np.array([])}
    return {
        reason: {
            "count": int(len(v)),
            "p50": float(np.percentile(v, 50)) if len(v) else None,
            "p99": float(np.percentile(v, 99)) if len(v) else None,
            "within_deadline": float(np.mean(v <= deadline_s)) if len(v) else None,
        }
        for reason, v in summary.items()
    }


def per_query(window: dict, event_logs: Path, queries: list[str]) -> dict[str, dict]:
    activity = query_activity(event_log_lines(event_logs), window["start_ms"], window["end_ms"])
    minutes = window["seconds"] / 60
    rows = {}
    for query in queries:
        found = activity.get(query)
        batches = found.batches if found else 0
        driver = window["thread_cpu_s"].get(f"stream {query}", 0.0)
        tasks = found.task_cpu_s if found else 0.0
        rows[query] = {
            "batches_per_min": batches / minutes,
            "rows_per_batch": (found.rows / batches) if batches else 0,
            "cpu_ms_per_batch": {"driver": 1000 * driver / batches, "tasks": 1000 * tasks / batches}
            if batches
            else None,
            "driver_cpu_s": driver,
            "task_cpu_s": tasks,
            "wall_ms_by_phase": found.mean_phases() if batches else {},
        }
    return rows


def report_lines(result: dict) -> list[str]:
    window = result["window"]
    lines = [
        f"{'query':<20} {'batches/min':>11} {'rows/batch':>10} {'CPU ms/batch (driver + tasks)':>30}  wall ms by phase"
    ]
    for query, row in result["queries"].items():
        cpu = row["cpu_ms_per_batch"]
        cpu_text = f"{cpu['driver'] + cpu['tasks']:.0f} ({cpu['driver']:.0f} + {cpu['tasks']:.0f})" if cpu else "-"
        phases = ", ".join(f"{p} {ms:.0f}" for p, ms in list(row["wall_ms_by_phase"].items())[:4]) or "-"
        lines.append(
            f"{query:<20} {row['batches_per_min']:>11.1f} {row['rows_per_batch']:>10.0f} {cpu_text:>30}  {phases}"
        )
    seconds = window["seconds"]
    threads = window["thread_cpu_s"]
    jvm = ", ".join(
        f"{group} {cpu / seconds:.3f}" for group, cpu in sorted(threads.items()) if not group.startswith("stream")
    )
    lines.append(f"JVM threads, cores: {jvm}")
    lines.append(
        "processes, cores: "
        + ", ".join(f"{kind} {cores:.3f}" for kind, cores in sorted(window["cores_by_process"].items()))
    )
    for reason, figures in window.get("latency_s", {}).items():
        if figures["count"]:
            lines.append(
                f"event to answer, {reason}: {figures['count']} answers, p50 {figures['p50']:.2f} s, "
                f"p99 {figures['p99']:.2f} s, {figures['within_deadline']:.1%} within the deadline"
            )
    load = f" at {result['rate']:g} events/s" if result["rate"] else ""
    lines.append(
        f"{'idle' if not result['rate'] else 'loaded'}: {window['cores']:.2f} cores with {result['models']} models{load}"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    ensure_session_key()
    stamp = datetime.now(UTC)
    work = WORK / f"idle-{stamp:%Y%m%dT%H%M%S}"
    var = work / "var"
    overrides = [
        *(f"{k}={v}" for k, v in EVENT_LOG.items()),
        f"spark.conf.spark.eventLog.dir=file://{var / 'eventlog'}",
        *args.set,
    ]
    (var / "eventlog").mkdir(parents=True)
    config = write_conf(work / "conf", var, args.port, overrides, registry=args.registry, shipped_models=True)
    ensure_models(work, args.port, args.registry, print)
    models = sorted(config.models)
    queries = [q for job in runner.plan(config, models, separate=False) for q in job.queries]
    try:
        runner.up(config, models, echo=print)
        _settle(config, args, print)
        window = sample(config, args, print)
    finally:
        runner.down(config, echo=lambda *_: None)
    result = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": "python -m bench.idle",
        "rate": args.rate,
        "models": len(models),
        "overrides": args.set,
        "window": window,
        "queries": per_query(window, var / "eventlog", queries),
    }
    lines = report_lines(result)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"idle-{stamp:%Y-%m-%dT%H%M}" + (f"-{args.tag}" if args.tag else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(["", f"results: {args.out / name}.json", *lines]))


if __name__ == "__main__":
    main()
