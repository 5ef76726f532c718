"""`make bench`: every scenario at the same offered loads, against a real broker and real Delta tables.

For each scenario (bench/scenarios.py) in turn: a fresh broker, the scenario's Spark applications,
then each offered load for --step-seconds, each followed by a drain. The figures of every step go
to bench/results/<date>.json, the tables to <date>.md, the plots to <date>-*.png, and, unless
--tag is given, the table to bench/README.md. What each figure means: bench/README.md.

Usage:
    make bench                                    # every scenario, 1,000 requests/s and up
    python -m bench.run --scenarios limit rendezvous-1+2 --rates 1000 5000
    python -m bench.run --set 'spark.trigger=500 milliseconds' --tag trigger-500ms   # a tuning trial
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.app import HOP_TOPICS
from bench.load import Load, Offsets
from bench.measure import ProcessTree, ProgressLogs, Sampler
from bench.report import summary_lines, update_readme, write_report
from bench.scenarios import SCENARIOS, Scenario
from bench.setup import REGISTRY, ROOT, ensure_models, scenario_confs, start_broker
from bench.steps import run_step, start_apps
from features.personal_key import ensure_session_key
from rdv.config import load_config
from rdv.operations import runner
from rdv.operations.kafka_local import pipeline_topics
from rdv.spark_launch import DELTA_VERSION, SPARK_VERSION

WORK = ROOT / "var" / "bench"
FIXED_LOADS = (1000, 5000)  # the loads every scenario's latency is reported at


def run_scenario(scenario: Scenario, args, work: Path, echo) -> dict:
    echo(f"{scenario.name}: {scenario.about}")
    configs = scenario_confs(work, scenario, args.port, args.set, args.registry)
    first = configs["a"]
    bootstrap, raw = first.kafka.bootstrap_servers, first.kafka.topics.raw.name
    broker = start_broker(configs)
    sampler = load = offsets = None
    steps: list[dict] = []
    skipped: dict[int, str] = {}
    try:
        started = time.monotonic()
        pids = start_apps(configs, scenario.apps, echo)
        startup_s = time.monotonic() - started
        topics = sorted({t for c in configs.values() for t, _ in pipeline_topics(c)} | set(HOP_TOPICS))
        offsets = Offsets(bootstrap, topics)
        progress = [ProgressLogs(c.path(c.paths.var) / "run" / "progress-log") for c in configs.values()]
        sampler = Sampler([ProcessTree(p) for p in pids], ProcessTree(broker.pid()), offsets, progress)
        sampler.start()
        load = Load(bootstrap, raw)
        # Code generation, Python workers, the first state store versions: paid for before measuring.
        echo(f"  warm-up: {min(args.rates)}/s for {args.warm_up_seconds:g} s, not measured")
        run_step(
            load,
            sampler,
            scenario.outputs,
            bootstrap,
            raw,
            min(args.rates),
            args.warm_up_seconds,
            args.drain_seconds,
            f"{scenario.name}-warm-up",
            lambda *_: None,
            healthy=lambda: check_healthy(configs),
        )
        for rate in loads(args.rates, steps, skipped, args.drain_seconds):
            steps.append(
                run_step(
                    load,
                    sampler,
                    scenario.outputs,
                    bootstrap,
                    raw,
                    rate,
                    args.step_seconds,
                    args.drain_seconds,
                    f"{scenario.name}-{rate}",
                    echo,
                    healthy=lambda: check_healthy(configs),
                    costs_topics=tuple(c.kafka.topics.costs.name for c in configs.values()),
                )
            )
    finally:
        for resource in (sampler, load, offsets):
            if resource is not None:
                resource.close()
        for config in configs.values():
            runner.down(config, stop_broker=False, echo=lambda *_: None)
        broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    bounded = [s["offered_rps"] for s in steps if s["bounded"]]
    return {
        "scenario": scenario.name,
        "about": scenario.about,
        "applications": len(scenario.apps),
        "jobs": [list(app.jobs) for app in scenario.apps],
        "challengers": scenario.challengers,
        "outputs": list(scenario.outputs),
        "startup_s": round(startup_s, 1),
        "sustained_rps": max(bounded) if bounded else 0,
        "capacity_rps": max((s["processed_rps"] for s in steps), default=0),
        "steps": steps,
        "skipped": skipped,
    }


def check_healthy(configs: dict) -> None:
    """A scenario whose query failed or whose application died (and was started again by the
    supervisor) measures no steady state: it fails."""
    for config in configs.values():
        runner.check_healthy(config)
        for name, state in runner.job_states(config).items():
            if state.get("last_exit") is not None:
                raise RuntimeError(
                    f"{name} exited ({runner.restarts_text(state)}); see its log under {runner.run_files(config).logs}"
                )


def loads(rates: list[int], steps: list[dict], skipped: dict[int, str], drain_s: float) -> Iterator[int]:
    """The loads to send, in order, decided as the steps come in: once one is not sustained, only
    the fixed loads follow; after a backlog that did not drain, nothing; then the refining load."""
    for rate in rates:
        unsustained = [s["offered_rps"] for s in steps if not s["bounded"]]
        if steps and steps[-1]["drain_s"] is None:
            skipped[rate] = f"the backlog of {steps[-1]['offered_rps']}/s did not drain in {drain_s:g} s"
        elif unsustained and rate not in FIXED_LOADS:
            skipped[rate] = f"{min(unsustained)}/s was not sustained already"
        else:
            yield rate
    if steps and steps[-1]["drain_s"] is not None and (rate := refinement(steps)) is not None:
        yield rate


def refinement(steps: list[dict]) -> int | None:
    """The load to try between the highest bounded step and the lowest unbounded one: 95% of what
    the path processed when it was overloaded, in steps of 250/s; None when there is no such gap."""
    bounded = [s["offered_rps"] for s in steps if s["bounded"]]
    unbounded = [s for s in steps if not s["bounded"]]
    if not unbounded:
        return None
    lowest = min(unbounded, key=lambda s: s["offered_rps"])
    rate = int(0.95 * lowest["processed_rps"] / 250) * 250
    return (
        rate
        if max(bounded, default=0) < rate < lowest["offered_rps"] and rate not in [s["offered_rps"] for s in steps]
        else None
    )


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "java": java,
        "spark": SPARK_VERSION,
        "delta": DELTA_VERSION,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Figures and schema: bench/README.md.",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=list(SCENARIOS),
        help="which scenarios (default: all, in this order)",
    )
    parser.add_argument(
        "--rates",
        nargs="+",
        type=int,
        default=[1000, 2500, 5000, 7500, 10000, 15000, 20000],
        help="offered loads in requests/s, in this order; once one is not sustained, only the "
        "fixed loads (1000, 5000) and one refining step between follow (default: %(default)s)",
    )
    parser.add_argument(
        "--step-seconds", type=float, default=40, help="how long each load is sent (default: %(default)s)"
    )
    parser.add_argument(
        "--warm-up-seconds",
        type=float,
        default=120,
        help="an unmeasured load at the lowest rate before the first step: a fresh JVM compiles "
        "Spark's code paths for minutes (default: %(default)s)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=90,
        help="how long to wait after a load for every output (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pipeline.yaml setting, e.g. 'spark.trigger=0 seconds' or "
        "'spark.conf.spark.sql.shuffle.partitions=4' (repeatable)",
    )
    parser.add_argument("--tag", help="a trial's name: results go to <date>-<tag>.*, and bench/README.md is left alone")
    parser.add_argument("--port", type=int, default=19192, help="the benchmark broker's port (default: %(default)s)")
    parser.add_argument(
        "--registry",
        default=REGISTRY,
        help="the MLflow registry with the demo models, trained there on first use (default: var/bench/mlflow)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="results directory (default: bench/results)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each scenario's checkpoints, tables and logs under var/bench/"
    )
    args = parser.parse_args(argv)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # Stopped from outside, still stop the applications and the broker it started (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    echo = lambda line: print(line, flush=True)  # noqa: E731

    ensure_session_key()
    # The applications run `python -m bench.app` from their conf's parent directory.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    stamp = datetime.now(UTC)
    work = WORK / stamp.strftime("%Y%m%dT%H%M%S")
    ensure_models(work, args.port, args.registry, echo)
    results = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "settings": {
            "rates": args.rates,
            "step_seconds": args.step_seconds,
            "warm_up_seconds": args.warm_up_seconds,
            "drain_seconds": args.drain_seconds,
            "overrides": args.set,
            "fixed_loads": list(FIXED_LOADS),
            "deadline_ms": load_config(ROOT / "conf").policy.deadline_ms,
        },
        "scenarios": [],
    }
    name = stamp.strftime("%Y-%m-%d") + (f"-{args.tag}" if args.tag else "")
    for scenario in args.scenarios:
        results["scenarios"].append(run_scenario(SCENARIOS[scenario], args, work / scenario, echo))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")  # kept as it grows
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    report = write_report(results, args.out, name)
    if not args.tag:
        update_readme(ROOT / "bench" / "README.md", report, results)
    echo(f"results: {args.out / (name + '.json')}, {args.out / (name + '.md')}")
    for line in summary_lines(results):
        echo(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
