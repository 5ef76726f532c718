"""The guards of automatic promotion and the test of a rollback (comparison/guards.py), on exact figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from comparison.guards import Candidate, Health, choose, guard_text, held_back, in_cooldown, regression
from comparison.metrics import mcnemar
from comparison.significance import KEEP_WATCHING, PROMOTE, Evidence
from rdv.config import CompareConfig, PromotionRule

RULE = PromotionRule(enabled=True, max_error_share=0.02)
CHAMPION = Health(scored=1000, errors=0, in_time=990)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def found(challenger: str, effect: float, recommendation: str = PROMOTE) -> Evidence:
    return Evidence(
        challenger=challenger,
        champion="champion",
        metric="roc_auc",
        labelled=800,
        resampled=800,
        evaluated_from=None,
        evaluated_to=None,
        champion_value=0.7,
        challenger_value=0.7 + effect,
        effect=effect,
        ci_low=effect - 0.02,
        ci_high=effect + 0.02,
        confidence=0.95,
        mcnemar_champion_only=10,
        mcnemar_challenger_only=40,
        mcnemar_statistic=17.0,
        mcnemar_p_value=0.0001,
        mcnemar_method="chi2",
        recommendation=recommendation,
        rule="",
    )


def candidate(name: str, effect: float, health: Health = CHAMPION, rolled_back: bool = False, **kw) -> Candidate:
    return Candidate(found(name, effect, **kw), health, "7", rolled_back)


def test_a_challenger_that_passes_every_guard_is_promoted_and_the_largest_improvement_wins():
    chosen, held = choose(
        [candidate("a", 0.05), candidate("b", 0.10), candidate("c", 0.2, recommendation=KEEP_WATCHING)], CHAMPION, RULE
    )
    assert chosen is not None and chosen.evidence.challenger == "b" and held == []


def test_each_guard_holds_a_challenger_back_and_says_why():
    too_many_errors = Health(scored=1000, errors=21, in_time=990)
    slower = Health(scored=1000, errors=0, in_time=989)
    assert "2.1% of its scores were errors" in held_back(candidate("a", 0.1, too_many_errors), CHAMPION, RULE)
    assert held_back(candidate("a", 0.1, Health(1000, 20, 990)), CHAMPION, RULE) is None  # at the share, not above
    assert "98.9% of its scores in time, below the champion's 99.0%" in held_back(
        candidate("a", 0.1, slower), CHAMPION, RULE
    )
    assert "version 7 was rolled back" in held_back(candidate("a", 0.1, rolled_back=True), CHAMPION, RULE)
    chosen, held = choose([candidate("a", 0.3, slower), candidate("b", 0.1)], CHAMPION, RULE)
    assert chosen.evidence.challenger == "b" and len(held) == 1 and held[0].startswith("a: ")
    assert choose([candidate("a", 0.3, slower)], CHAMPION, RULE)[0] is None


def test_no_change_of_champion_within_the_cooldown():
    cooldown = timedelta(hours=1)
    assert in_cooldown(None, NOW, cooldown) is None
    assert in_cooldown(NOW - timedelta(minutes=59), NOW, cooldown).startswith("the last change of champion was at")
    assert in_cooldown(NOW - timedelta(minutes=61), NOW, cooldown) is None


def test_a_rollback_when_the_previous_champion_is_better_or_the_new_one_is_significantly_later():
    same = Health(1000, 0, 990)
    no_difference = mcnemar(np.ones(4), np.array([1.0, 1, 0, 0]), np.array([1.0, 1, 0, 0]))
    assert regression(found("previous", 0.05), no_difference, same, same, 0.95).startswith(
        "the previous champion is better"
    )
    assert regression(found("previous", 0.05, KEEP_WATCHING), no_difference, same, same, 0.95) is None
    assert regression(None, no_difference, same, same, 0.95) is None
    # The new champion late on 60 of 1000 requests the previous one answered in time, and never the other way.
    late = np.ones(1000)
    late[:60] = 0
    worse = mcnemar(np.ones(1000), late, np.ones(1000))
    new, old = Health(1000, 0, 940), Health(1000, 0, 1000)
    assert "in time for 94.0% of the requests, the previous one for 100.0%" in regression(None, worse, new, old, 0.95)
    # A lower rate that McNemar's test does not tell from chance is no regression.
    two_late = np.ones(1000)
    two_late[:2] = 0
    assert regression(None, mcnemar(np.ones(1000), two_late, np.ones(1000)), Health(1000, 0, 998), old, 0.95) is None


def test_the_rule_as_text_names_every_guard_with_its_setting():
    settings = CompareConfig(promote=PromotionRule(enabled=True, cooldown="6 hours", watch="2 hours"))
    text = guard_text(settings)
    for part in (
        "cooldown of 6 hours",
        "at most 1.0% errors",
        "no lower than the champion's",
        "within 2 hours",
        "p < 0.05",
    ):
        assert part in text, part
