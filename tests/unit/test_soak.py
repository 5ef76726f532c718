"""The soak's verdict: judged from its steady state, a figure is bounded when the median of its
second half is no more than 10% and a floor above the first half's."""

from __future__ import annotations

import pytest

from bench.soak import steady_from, table, verdicts


def samples(values: list[float], figure: str = "state rows: rendezvous", every_s: float = 30.0):
    return [(i * every_s, {figure: v}) for i, v in enumerate(values)]


def test_a_plateau_is_bounded_and_a_steady_climb_is_not():
    plateau = verdicts(samples([0, 900, 1000, 1100, 1000, 1050, 1100, 1000]), start=30, rate=50)
    assert [(v.first_half_median, v.second_half_median, v.bounded) for v in plateau] == [(1000, 1025, True)]
    climb = verdicts(samples([0, 1000, 2000, 3000, 4000, 5000, 6000, 7000]), start=30, rate=50)
    assert not climb[0].bounded and climb[0].last == 7000


def test_one_batch_that_catches_up_is_not_a_leak():
    spike = verdicts(samples([0, 2000, 2400, 2100, 2300, 3300, 2200, 2400]), start=30, rate=50)[0]
    assert spike.bounded and spike.second_half_max == 3300


def test_pending_requests_may_move_by_five_seconds_of_traffic():
    pending = samples([0, 100, 120, 90, 110, 340, 300, 150], figure="pending requests")
    assert verdicts(pending, start=30, rate=50)[0].bounded  # median 225 <= 100 * 1.1 + 250
    assert not verdicts(pending, start=30, rate=10)[0].bounded  # 225 > 100 * 1.1 + 50


def test_only_the_samples_from_the_start_are_judged_and_too_few_are_refused():
    # The JVM's first minutes of heap growth are the warm-up's.
    memory = samples([100, 400, 800, 1000, 1010, 1020, 1000, 1030, 1010, 1020], figure="RSS MiB: rendezvous")
    judged = verdicts(memory, start=90, rate=50)[0]
    assert judged.at_start == 1000 and judged.bounded
    with pytest.raises(ValueError, match="samples after the warm-up"):
        verdicts(memory[:4], start=90, rate=50)
    leak = samples([100, 200, 300, 400, 500, 600], figure="RSS MiB: decoy")
    assert "GROWING" in table(verdicts(leak, start=0, rate=50))


def pending_and_rows(pending: list[float], rows: list[float]):
    return [
        (i * 30.0, {"pending requests": p, "state rows: rendezvous": r}) for i, (p, r) in enumerate(zip(pending, rows))
    ]


def test_the_steady_state_begins_when_the_backlog_of_the_start_has_drained():
    # The last 20-minute run's shape: while the jobs caught up, the join held fewer rows than once
    # they kept pace, which judged from the warm-up alone reads as growth.
    run = pending_and_rows(
        [1500, 4700, 3400, 2300, 900, 800, 850, 780, 820, 790],
        [0, 1200, 1300, 1400, 2300, 2350, 2400, 2300, 2450, 2380],
    )
    from_warm_up = {v.figure: v.bounded for v in verdicts(run, start=60, rate=50)}
    assert from_warm_up == {"pending requests": True, "state rows: rendezvous": False}
    start = steady_from(run, warm_up_s=60, drained=950)
    assert start == 120
    assert [v.bounded for v in verdicts(run, start, rate=50)] == [True, True]


def test_the_warm_up_still_counts_and_a_backlog_that_never_drains_is_no_steady_state():
    early = pending_and_rows([100, 200, 900, 800, 850, 780], [0, 500, 1000, 1000, 1000, 1000])
    assert steady_from(early, warm_up_s=90, drained=950) == 90  # drained at once, judged after the warm-up
    behind = pending_and_rows([1500, 3000, 4500, 6000], [0, 100, 200, 300])
    assert steady_from(behind, warm_up_s=30, drained=950) is None
    assert steady_from([], warm_up_s=30, drained=950) is None
