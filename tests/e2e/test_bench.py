"""A smoke run of `make bench`, so that the benchmark cannot rot: two scenarios at a small load for
seconds, through a broker of its own, the real jobs and Delta. Nothing here depends on how fast
the machine is: the test checks that every figure is there and that no request was lost."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.helpers import REPO

RATE, SECONDS = 100, 6


def test_a_smoke_run_writes_every_figure_of_every_scenario(tmp_path, registry):
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--scenarios",
        "limit",
        "rendezvous-1+1",
        "--rates",
        str(RATE),
        "--step-seconds",
        str(SECONDS),
        "--warm-up-seconds",
        "4",
        "--drain-seconds",
        "120",
        "--tag",
        "smoke",
        "--out",
        str(out),
        "--port",
        "19292",
        "--registry",
        registry,
    ]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    (results_file,) = out.glob("*-smoke.json")
    results = json.loads(results_file.read_text())
    assert [s["scenario"] for s in results["scenarios"]] == ["limit", "rendezvous-1+1"]
    assert results["machine"]["cores"] >= 1 and results["settings"]["rates"] == [RATE]
    for scenario in results["scenarios"]:
        (step,) = scenario["steps"]
        # Nothing lost: every request came out at the end of the path, once, and was timed.
        assert step["events"] == RATE * SECONDS and step["complete"], step
        assert step["latency_s"]["count"] == RATE * SECONDS
        assert 0 < step["latency_s"]["p50"] <= step["latency_s"]["p95"] <= step["latency_s"]["p99"]
        assert step["cpu_s_per_1k"] > 0 and step["peak_rss_mib"] > 100 and step["drain_s"] is not None
        assert step["stages"], "no micro-batch durations from the progress reports"
    limit, rendezvous = results["scenarios"]
    assert {"hop-1", "hop-2", "hop-3"} <= set(limit["steps"][0]["stages"])
    assert {"features", "score-champion", "score-challenger-1", "rendezvous"} <= set(rendezvous["steps"][0]["stages"])
    by_reason = rendezvous["steps"][0]["latency_by_reason_s"] or {"preferred": rendezvous["steps"][0]["latency_s"]}
    assert sum(r["count"] for r in by_reason.values()) == RATE * SECONDS

    report = (out / results_file.name.replace(".json", ".md")).read_text()
    assert "| limit |" in report and "| rendezvous-1+1 |" in report and "Goals:" in report
    assert {p.name.split("-smoke-")[1] for p in out.glob("*.png")} == {"throughput.png", "latency.png", "cpu.png"}
    summary = run.stdout.strip().splitlines()[-2:]
    for line, name in zip(summary, ("limit", "rendezvous-1+1")):
        assert re.fullmatch(
            rf"{re.escape(name)}: \d+ requests/s sustained, p99 (\d+\.\d\d s|n/a) at 1000 requests/s", line
        )
