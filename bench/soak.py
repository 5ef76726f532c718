"""`make soak`: the pipeline under a steady load for a long run, to show that nothing in it grows
without bound.

It runs the shipped conf with the champion and one challenger, each job its own spark-submit under
the supervisor (`rdv up --separate`), on a local broker of its own. Generated events go to rdv.raw at
a steady rate. Every --every seconds it samples three things:

- each stateful query's state store: its rows and its bytes (memory and files). The features job's
  de-duplication and the rendezvous's join hold state that their watermarks evict. The report also
  keeps the MiB in RocksDB's memory and in its SST files apart.
- the requests sent but not answered on rdv.results yet;
- the memory (RSS) of each job's processes: its JVM and its Python workers. The report also keeps
  each job's RSS per program (java, python), to tell which one grew.

The run is judged from its steady state: after the warm-up, and once the pending requests have
first fallen to those a pipeline that keeps pace holds (the requests of the last largest deadline +
grace + transit). Until then the jobs catch up on the backlog of their start, and their state is
not yet what it will be. At the end it prints, for each figure, its value at the steady state's
start, its median and its maximum over the first and the second half of the rest of the run, and
its last value. A figure is bounded when its median over the second half exceeds the first half's
by no more than 10% and a small floor of its kind. A leak moves the median of the second half; one
batch that catches up after a pause moves only a maximum (the first 30-minute run had the
rendezvous's state rows at a typical 2,000 to 2,500, and at 3,218 in one sample). A run whose
backlog never drained, or in which a job had to be restarted, is not bounded.

Usage:
    python -m bench.soak [--minutes 20] [--rate 50] [--every 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench.load import Load, Offsets
from bench.measure import ProcessTree
from bench.setup import REGISTRY, ROOT, ensure_models, write_conf
from features.personal_key import ensure_session_key
from rdv.config import PipelineConfig, load_config
from rdv.operations import runner
from rdv.spark import TRACK_STATE_ROWS

MODELS = ["champion", "challenger-1"]
MIB = 1024 * 1024
# How much a figure may rise from the first half to the second on top of 10%, by its kind: noise
# that says nothing about a leak (a RocksDB compaction, a JVM that grows its heap a little).
FLOORS = {"state rows": 200, "state MiB": 16, "pending requests": None, "RSS MiB": 64}


@dataclass(frozen=True)
class Verdict:
    figure: str
    at_start: float
    first_half_median: float
    second_half_median: float
    first_half_max: float
    second_half_max: float
    last: float
    bounded: bool


def figures(config: PipelineConfig, trees: dict[str, ProcessTree], answered: int, sent: int) -> dict[str, float]:
    """One sample: state rows and MiB per stateful query, pending requests, RSS MiB per job."""
    sample: dict[str, float] = {}
    for name, progress in sorted(runner.query_states(config).items()):
        operators = progress.get("stateOperators") or []
        if not operators:
            continue
        rows = sum(op.get("numRowsTotal", 0) for op in operators)
        used = sum(
            op.get("memoryUsedBytes", 0) + op.get("customMetrics", {}).get("rocksdbSstFileSize", 0) for op in operators
        )
        sample[f"state rows: {name}"] = rows
        sample[f"state MiB: {name}"] = round(used / MIB, 1)
    sample["pending requests"] = max(sent - answered, 0)
    for name, tree in sorted(trees.items()):
        sample[f"RSS MiB: {name}"] = round(tree.sample()[1] / MIB)
    return sample


def state_parts(config: PipelineConfig) -> dict[str, dict[str, float]]:
    """Each stateful query's state MiB in RocksDB's memory (memtables, cache) and in its SST files,
    to tell which one grew."""
    parts = {}
    for name, progress in sorted(runner.query_states(config).items()):
        operators = progress.get("stateOperators") or []
        if operators:
            parts[name] = {
                "memory": round(sum(op.get("memoryUsedBytes", 0) for op in operators) / MIB, 1),
                "sst files": round(
                    sum(op.get("customMetrics", {}).get("rocksdbSstFileSize", 0) for op in operators) / MIB, 1
                ),
                "operators": len(operators),
            }
    return parts


def steady_from(samples: list[tuple[float, dict[str, float]]], warm_up_s: float, drained: float) -> float | None:
    """When the run's steady state began: warm_up_s after the first sample, and not before the
    pending requests first fell to `drained`, the requests that only wait for their decision
    point. Until then the jobs catch up on the backlog of their start, and a state store that
    catches up holds fewer rows than one that keeps pace (the rendezvous's join at 50/s: about
    1,700 while behind, 2,300 once caught up), which a verdict would read as growth. None when
    the backlog never drained: the run never reached a steady state."""
    if not samples:
        return None
    warm = samples[0][0] + warm_up_s
    drained_at = next((t for t, s in samples if s.get("pending requests", 0) <= drained), None)
    return None if drained_at is None else max(warm, drained_at)


def verdicts(samples: list[tuple[float, dict[str, float]]], start: float, rate: float) -> list[Verdict]:
    """Each figure bounded or not, over the samples taken from `start` on."""
    measured = [(t, s) for t, s in samples if t >= start]
    if len(measured) < 4:
        raise ValueError(f"{len(measured)} samples after the warm-up: run longer or sample more often")
    middle = measured[0][0] + (measured[-1][0] - measured[0][0]) / 2
    out = []
    for figure in sorted({f for _, s in measured for f in s}):
        first = [s[figure] for t, s in measured if t < middle and figure in s]
        second = [s[figure] for t, s in measured if t >= middle and figure in s]
        if not first or not second:
            continue
        kind = figure.split(":")[0]
        floor = FLOORS[kind] if FLOORS.get(kind) is not None else rate * 5  # five seconds of traffic
        bounded = statistics.median(second) <= statistics.median(first) * 1.1 + floor
        out.append(
            Verdict(
                figure,
                first[0],
                statistics.median(first),
                statistics.median(second),
                max(first),
                max(second),
                second[-1],
                bounded,
            )
        )
    return out


def table(results: list[Verdict]) -> str:
    lines = [
        f"{'figure':<32} {'at start':>13} {'median 1st':>10} {'median 2nd':>10} {'max 1st':>8} "
        f"{'max 2nd':>8} {'last':>8}  verdict (medians)"
    ]
    for v in results:
        lines.append(
            f"{v.figure:<32} {v.at_start:>13g} {v.first_half_median:>10g} {v.second_half_median:>10g} "
            f"{v.first_half_max:>8g} {v.second_half_max:>8g} {v.last:>8g}  "
            f"{'bounded' if v.bounded else 'GROWING'}"
        )
    return "\n".join(lines)


def soak_conf(
    work: Path, port: int, registry: str, spec_limits: dict[str, str] | None = None, heap_at_start: bool = True
) -> PipelineConfig:
    """The shipped conf on the soak's own broker and paths; spec_limits override features.yaml's.
    With heap_at_start, every job holds its whole heap from its start, so RSS measures the rest."""
    config = write_conf(
        work / "conf",
        work / "var",
        port,
        [f"spark.heap_at_start={str(heap_at_start).lower()}", f"spark.conf.{TRACK_STATE_ROWS}=true"],
        registry=registry,
    )
    if spec_limits:
        spec_file = config.feature_spec_file
        spec = yaml.safe_load(spec_file.read_text())
        spec["limits"].update(spec_limits)
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        config = load_config(config.conf_dir)
    return config


def run(
    minutes: float,
    rate: float,
    every_s: float,
    port: int,
    work: Path,
    echo=print,
    warm_up_s: float = 120.0,
    spec_limits: dict[str, str] | None = None,
    registry: str = REGISTRY,
    heap_at_start: bool = True,
) -> dict:
    """Start, load, sample, stop; the samples and the verdicts."""
    ensure_session_key()
    ensure_models(work, port, registry, echo)
    config = soak_conf(work, port, registry, spec_limits, heap_at_start)
    echo(f"soak: starting {', '.join(MODELS)} and every other job on 127.0.0.1:{port}")
    runner.up(config, MODELS, separate=True, echo=lambda *_: None)
    samples: list[tuple[float, dict[str, float]]] = []
    answered_at: list[int] = []  # per sample, the results on the topic so far: no figure to judge, it only grows
    programs: list[dict[str, dict[str, int]]] = []  # per sample, each job's RSS MiB per program
    stores: list[dict[str, dict[str, float]]] = []  # per sample, each state store's MiB per part
    sent: dict = {"n": 0, "error": None}
    stop = threading.Event()
    try:
        trees = {name: ProcessTree(pid) for name, pid in runner.running_jobs(config).items()}
        load = Load(config.kafka.bootstrap_servers, config.kafka.topics.raw.name)
        offsets = Offsets(config.kafka.bootstrap_servers, [config.kafka.topics.results.name])

        def send() -> None:
            chunk = 0
            try:
                while not stop.is_set():
                    sent["n"] += load.send(rate, 5, f"soak-{chunk:06d}").events
                    chunk += 1
            except Exception as error:  # noqa: BLE001 - reported by the sampling loop, which stops the run
                sent["error"] = error

        sender = threading.Thread(target=send, daemon=True)
        started = time.time()
        sender.start()
        echo(f"soak: {rate:g} requests/s for {minutes:g} minutes, a sample every {every_s:g} s")
        while time.time() < started + minutes * 60:
            time.sleep(every_s)
            if sent["error"] is not None:
                raise RuntimeError(f"the load generator stopped: {sent['error']!r}")
            runner.check_healthy(config)
            answered = sum(offsets.by_partition()[config.kafka.topics.results.name].values())
            sample = figures(config, trees, answered, sent["n"])
            samples.append((time.time(), sample))
            answered_at.append(answered)
            programs.append(
                {
                    name: {program: round(rss / MIB) for program, rss in tree.resident_by_program().items()}
                    for name, tree in trees.items()
                }
            )
            stores.append(state_parts(config))
            echo(
                f"soak: {(time.time() - started) / 60:5.1f} min, {sent['n']} sent, "
                f"{sample['pending requests']:g} pending, "
                + ", ".join(f"{k} {v:g}" for k, v in sample.items() if k.startswith("state rows"))
            )
        restarts = {name: s["restarts"] for name, s in runner.job_states(config).items() if s.get("restarts")}
        stop.set()
        sender.join(timeout=30)
        load.close()
        offsets.close()
    finally:
        stop.set()
        runner.down(config, echo=lambda *_: None)
    drained = waiting_requests(config, rate)
    steady = steady_from(samples, warm_up_s, drained)
    # A run that never caught up is judged from its warm-up, so that its figures still show, and is
    # not bounded.
    results = verdicts(samples, samples[0][0] + warm_up_s if steady is None else steady, rate) if samples else []
    return {
        "minutes": minutes,
        "rate": rate,
        "every_s": every_s,
        "warm_up_s": warm_up_s,
        "models": MODELS,
        "sent": sent["n"],
        "restarts": restarts,
        "drained_below": drained,
        "steady_from_min": None if steady is None else round((steady - started) / 60, 1),
        "samples": [{"t": t, "answered": a, **s} for (t, s), a in zip(samples, answered_at)],
        "rss_mib_by_program": programs,
        "state_mib_by_part": stores,
        "verdicts": [asdict(v) for v in results],
        "bounded": steady is not None and bool(results) and all(v.bounded for v in results) and not restarts,
    }


def waiting_requests(config: PipelineConfig, rate: float) -> float:
    """How many requests are pending in a pipeline that keeps pace: those sent within the longest
    wait a request may have and the transit (Timing.watermark_ms)."""
    return rate * config.timing.watermark_ms / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20, help="how long to load it (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=50, help="requests per second (default: %(default)s)")
    parser.add_argument("--every", type=float, default=30, help="seconds between samples (default: %(default)s)")
    parser.add_argument(
        "--warm-up",
        type=float,
        default=120,
        help="seconds of the run not judged, at least: JVMs, Python workers, the first state; the "
        "judging also waits for the start's backlog to drain (default: %(default)s)",
    )
    parser.add_argument("--port", type=int, default=19193, help="the soak's own broker (default: %(default)s)")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where soak-<date>T<HHMM>.json goes (default: bench/results)",
    )
    args = parser.parse_args(argv)
    work = ROOT / "var" / "bench" / f"soak-{int(time.time())}"
    started = datetime.now(UTC)
    try:
        report = run(args.minutes, args.rate, args.every, args.port, work, warm_up_s=args.warm_up)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"soak-{started:%Y-%m-%dT%H%M}.json"  # a run's own file: two runs a day keep both
    out.write_text(json.dumps(report, indent=1))
    if report["steady_from_min"] is None:
        print(
            f"the backlog of the start never drained to {report['drained_below']:g} pending requests: "
            "no steady state to judge; the verdicts below count from the warm-up"
        )
    else:
        print(
            f"steady from minute {report['steady_from_min']:g}, when the pending requests first fell to "
            f"{report['drained_below']:g}; judged from there"
        )
    print(table([Verdict(**v) for v in report["verdicts"]]))
    if report["restarts"]:
        print(f"restarted during the run: {report['restarts']}")
    print(
        f"soak: {report['sent']} requests over {args.minutes:g} minutes at {args.rate:g}/s: "
        f"{'every figure bounded' if report['bounded'] else 'NOT bounded'}; figures in {out}"
    )
    return 0 if report["bounded"] else 1


if __name__ == "__main__":
    sys.exit(main())
