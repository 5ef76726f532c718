"""The soak's verdict: a figure is bounded when the median of its second half is no more than 10%
and a floor above the first half's."""
from __future__ import annotations

import pytest

from bench.soak import table, verdicts


def samples(values: list[float], figure: str = "state rows: rendezvous", every_s: float = 30.0):
    return [(i * every_s, {figure: v}) for i, v in enumerate(values)]


def test_a_plateau_is_bounded_and_a_steady_climb_is_not():
    plateau = verdicts(samples([0, 900, 1000, 1100, 1000, 1050, 1100, 1000]), warm_up_s=30, rate=50)
    assert [(v.first_half_median, v.second_half_median, v.bounded) for v in plateau] == [(1000, 1025, True)]
    climb = verdicts(samples([0, 1000, 2000, 3000, 4000, 5000, 6000, 7000]), warm_up_s=30, rate=50)
    assert not climb[0].bounded and climb[0].last == 7000


def test_one_batch_that_catches_up_is_not_a_leak():
    spike = verdicts(samples([0, 2000, 2400, 2100, 2300, 3300, 2200, 2400]), warm_up_s=30, rate=50)[0]
    assert spike.bounded and spike.second_half_max == 3300


def test_pending_requests_may_move_by_five_seconds_of_traffic():
    pending = samples([0, 100, 120, 90, 110, 340, 300, 150], figure="pending requests")
    assert verdicts(pending, warm_up_s=30, rate=50)[0].bounded  # median 225 <= 100 * 1.1 + 250
    assert not verdicts(pending, warm_up_s=30, rate=10)[0].bounded  # 225 > 100 * 1.1 + 50


def test_the_warm_up_is_not_judged_and_too_short_a_run_is_refused():
    # The JVM's first minutes of heap growth are the warm-up's.
    memory = samples([100, 400, 800, 1000, 1010, 1020, 1000, 1030, 1010, 1020], figure="RSS MiB: rendezvous")
    judged = verdicts(memory, warm_up_s=90, rate=50)[0]
    assert judged.after_warm_up == 1000 and judged.bounded
    with pytest.raises(ValueError, match="samples after the warm-up"):
        verdicts(memory[:4], warm_up_s=90, rate=50)
    leak = samples([100, 200, 300, 400, 500, 600], figure="RSS MiB: decoy")
    assert "GROWING" in table(verdicts(leak, warm_up_s=0, rate=50))
