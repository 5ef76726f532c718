"""The benchmark's arithmetic: lag at batch ends, the refining load, the marginal cost and the goals."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from bench.load import per_model_costs
from bench.measure import lags, residual_lags
from bench.report import goals, marginal_costs, summary_lines
from bench.run import refinement
from bench.setup import _set


def _report(started: str, seconds: float, read_up_to: dict) -> dict:
    return {
        "timestamp": started,
        "durationMs": {"triggerExecution": int(seconds * 1000)},
        "sources": [{"endOffset": read_up_to}],
    }


def test_residual_lag_is_what_arrived_by_a_batch_end_minus_what_it_read():
    # 100 records/s on two partitions from t=0 (epoch 1767225600 = 2026-01-01T00:00:00Z).
    t0 = 1767225600.0
    times = np.array([t0, t0 + 10])
    arrived = {"rdv.features": np.array([0.0, 1000.0])}
    reports = [
        _report("2026-01-01T00:00:02.000Z", 1.0, {"rdv.features": {"0": 100, "1": 100}}),
        _report("2026-01-01T00:00:04.000Z", 2.0, {"rdv.features": {"0": 200, "1": 150}}),
    ]
    points = residual_lags(reports, times, arrived)
    assert points == [pytest.approx((t0 + 3, 300 - 200, 300)), pytest.approx((t0 + 6, 600 - 350, 600))]


def test_residual_lag_skips_batches_of_other_sources():
    times, arrived = np.array([0.0, 1.0]), {"rdv.raw": np.array([0.0, 1.0])}
    delta_source = {
        "timestamp": "2026-01-01T00:00:00Z",
        "durationMs": {"triggerExecution": 5},
        "sources": [{"endOffset": {"sourceVersion": 1, "reservoirVersion": 3}}],
    }
    assert residual_lags([delta_source], times, arrived) == []


def test_lags_sum_every_partition_of_every_topic_a_query_reads():
    consumed = {"rendezvous": {"rdv.features": {0: 10, 1: 20}, "rdv.scores": {0: 5}}, "idle": {}}
    ends = {"rdv.features": {0: 15, 1: 20}, "rdv.scores": {0: 9}}
    assert lags(consumed, ends) == {"rendezvous": 9}


def _step(rate, bounded=True, processed=None, cpu=1.0, p99=1.0, by_reason=None):
    return {
        "offered_rps": rate,
        "bounded": bounded,
        "processed_rps": processed or rate,
        "cpu_s_per_1k": cpu,
        "latency_s": {"p50": p99 / 2, "p95": p99, "p99": p99, "count": 10},
        "latency_by_reason_s": by_reason or {},
        "drain_s": 5.0,
    }


def test_refinement_tries_95_percent_of_the_overloaded_throughput_in_steps_of_250():
    steps = [_step(1000), _step(2500), _step(5000, bounded=False, processed=3600.0)]
    assert refinement(steps) == 3250
    assert refinement([_step(1000), _step(5000)]) is None  # nothing was overloaded
    assert refinement([_step(1000), _step(2500, bounded=False, processed=1100.0)]) is None  # no room above 1000


def _results(**cpu_at_1000):
    scenarios = [
        {
            "scenario": name.replace("_", "-").replace("plus", "+"),
            "sustained_rps": 5000,
            "capacity_rps": 6000.0,
            "steps": [_step(1000, cpu=cpu)],
        }
        for name, cpu in cpu_at_1000.items()
    ]
    return {"settings": {"fixed_loads": [1000, 5000], "deadline_ms": 10_000}, "scenarios": scenarios}


def test_marginal_cost_of_a_challenger_is_the_mean_step_over_champion_only():
    results = _results(
        champion_only=2.0, rendezvous_1plus1=3.0, rendezvous_1plus2=3.4, rendezvous_1plus3=4.0, duplicate_pipelines=4.2
    )
    costs = marginal_costs(results, 1000)
    assert costs["challenger_cpu_s_per_1k"] == pytest.approx(0.5)
    assert costs["challenger_share"] == pytest.approx(0.25)
    assert costs["duplicate_share"] == pytest.approx(1.1)


def test_marginal_cost_is_not_taken_from_a_load_a_scenario_did_not_sustain():
    results = _results(champion_only=2.0, rendezvous_1plus1=3.0, rendezvous_1plus2=3.0)
    results["scenarios"][2]["steps"][0]["bounded"] = False  # saturated: its CPU is the machine's, not its cost
    assert marginal_costs(results, 1000)["challenger_share"] is None
    verdict = [(met, got) for goal, met, got in goals(results) if "challenger costs" in goal]
    assert verdict == [
        (
            False,
            "not measurable: rendezvous-1+2 did not sustain 1,000/s, so their CPU is the "
            "machine's limit, not their cost",
        )
    ]


def test_goals_say_which_hold_and_by_how_much_the_others_miss():
    results = _results(champion_only=2.0, rendezvous_1plus1=3.0, rendezvous_1plus2=4.0)
    target = results["scenarios"][2]
    target["sustained_rps"] = 4000
    target["steps"][0]["latency_by_reason_s"] = {"preferred": {"p99": 1.2}, "fallback": {"p99": 11.5}}
    (sustained, met_s, got_s), (preferred, met_p, _), (fallback, met_f, got_f), (marginal, met_m, got_m) = goals(
        results
    )
    assert (met_s, met_p, met_f, met_m) == (False, True, False, False)
    assert "4,000 requests/s sustained" in got_s and "20% short" in got_s
    assert "(11 s)" in fallback and got_f == "11.50 s"
    assert "at 1,000/s" in marginal and got_m.startswith("50%")


def test_summary_line_per_scenario():
    results = _results(limit=0.1)
    assert summary_lines(results) == ["limit: 5000 requests/s sustained, p99 1.00 s at 1000 requests/s"]


def test_set_reaches_nested_settings_and_keeps_the_dots_of_spark_keys():
    data = {"spark": {"trigger": "2 seconds", "conf": {}}}
    _set(data, "spark.trigger", "500 milliseconds")
    _set(data, "spark.conf.spark.sql.shuffle.partitions", "4")
    _set(data, "kafka.producer.linger.ms", "5")
    assert data == {
        "spark": {"trigger": "500 milliseconds", "conf": {"spark.sql.shuffle.partitions": "4"}},
        "kafka": {"producer": {"linger.ms": "5"}},
    }


def test_each_models_own_cpu_is_taken_from_the_samples_wholly_within_the_step():
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z

    def sample(model: str, start: float, end: float, cpu_s: float, requests: int) -> dict:
        at = lambda s: datetime.fromtimestamp(t0 + s, UTC).isoformat().replace("+00:00", "Z")  # noqa: E731
        return {"model": model, "measured_from": at(start), "measured_to": at(end), "cpu_s": cpu_s,
                "requests": requests, "measured_by": "tasks"}  # fmt: skip

    samples = [
        sample("champion", -5, 5, 9.0, 100),  # straddles the step's start: left out
        sample("champion", 5, 15, 2.0, 10_000),
        sample("champion", 15, 25, 3.0, 10_000),
        sample("challenger-1", 5, 15, 1.0, 2_000),
        sample("challenger-1", 25, 35, 1.0, 500),  # ends after the step: left out
    ]
    costs = per_model_costs(samples, t0, t0 + 30)
    assert {m: c["cpu_s_per_1k"] for m, c in costs.items()} == {"champion": 0.25, "challenger-1": 0.5}
    results = _results(limit=0.1)
    results["scenarios"][0]["steps"][0]["models"] = costs
    assert summary_lines(results) == [
        "limit: 5000 requests/s sustained, p99 1.00 s at 1000 requests/s; "
        "a challenger's own CPU 0.50 s per 1,000 requests (the champion's 0.25)"
    ]
