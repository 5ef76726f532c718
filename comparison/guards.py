"""Whether `rdv compare` may move @champion now: the guards of a promotion and the test of a rollback.

Pure decisions over figures computed elsewhere (comparison/promotion.py), so that each guard is
tested on exact numbers. A promotion needs the recommendation `promote` (comparison/significance.py)
and then passes every guard: no change of champion within the cooldown, a version that was never
rolled back (or that a person promoted since), errors within their share, and an in-time rate no
lower than the champion's. A rollback needs, within the watch after a change, the previous champion
(scoring as the challenger) to be better on the decisive metric by the same rule that promotes, or
the new champion's in-time rate to be lower by McNemar's test on the very requests both scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from comparison.metrics import McNemar
from comparison.significance import PROMOTE, Evidence, rule_text
from rdv.config import CompareConfig, PromotionRule


@dataclass(frozen=True)
class Health:
    """One model's scores over the period the evidence covers."""

    scored: int
    errors: int
    in_time: int

    @property
    def error_share(self) -> float:
        return self.errors / self.scored if self.scored else 0.0

    @property
    def in_time_rate(self) -> float:
        return self.in_time / self.scored if self.scored else 0.0


@dataclass(frozen=True)
class Candidate:
    """A challenger that the recommendation says to promote, with what the guards look at."""

    evidence: Evidence
    health: Health
    version: str
    rolled_back: bool  # `rdv compare` rolled this version back, and no person promoted it since


def held_back(candidate: Candidate, champion: Health, rule: PromotionRule) -> str | None:
    """Why this candidate may not be promoted, or None when every guard passes."""
    name, health = candidate.evidence.challenger, candidate.health
    if candidate.rolled_back:
        return f"{name}: version {candidate.version} was rolled back; `rdv promote` by a person clears it"
    if health.error_share > rule.max_error_share:
        return (
            f"{name}: {health.error_share:.1%} of its scores were errors "
            f"(compare.promote.max_error_share {rule.max_error_share:.1%})"
        )
    if health.in_time_rate < champion.in_time_rate:
        return (
            f"{name}: {health.in_time_rate:.1%} of its scores in time, below the champion's {champion.in_time_rate:.1%}"
        )
    return None


def in_cooldown(last_change: datetime | None, now: datetime, cooldown: timedelta) -> str | None:
    """Why no change of champion may happen now, or None when the cooldown has passed."""
    if last_change is not None and now - last_change < cooldown:
        return (
            f"the last change of champion was at {last_change:%Y-%m-%d %H:%M:%S} UTC, within compare.promote.cooldown"
        )
    return None


def choose(candidates: list[Candidate], champion: Health, rule: PromotionRule) -> tuple[Candidate | None, list[str]]:
    """The candidate to promote (of those every guard lets through, the largest improvement), and
    why each other one was held back."""
    passed, reasons = [], []
    for candidate in candidates:
        if candidate.evidence.recommendation != PROMOTE:
            continue
        if (reason := held_back(candidate, champion, rule)) is None:
            passed.append(candidate)
        else:
            reasons.append(reason)
    best = max(passed, key=lambda c: c.evidence.effect or 0.0, default=None)
    return best, reasons


def regression(previous: Evidence | None, in_time: McNemar, new: Health, old: Health, confidence: float) -> str | None:
    """Why the new champion is to be rolled back, or None. `previous` is the evidence of the
    previous champion, scoring as the challenger since the change, against the new champion;
    in_time is McNemar's test of the two models' in-time flags on the requests both scored (the
    champion's as the first model)."""
    if previous is not None and previous.recommendation == PROMOTE:
        return (
            f"the previous champion is better on {previous.metric}: improvement {previous.effect:+.4f}, "
            f"interval [{previous.ci_low:+.4f}, {previous.ci_high:+.4f}] over {previous.labelled} labelled requests"
        )
    if new.in_time_rate < old.in_time_rate and in_time.p_value < 1.0 - confidence:
        return (
            f"the new champion is in time for {new.in_time_rate:.1%} of the requests, the previous one for "
            f"{old.in_time_rate:.1%} (McNemar p = {in_time.p_value:.2g})"
        )
    return None


def guard_text(settings: CompareConfig) -> str:
    """The whole rule of guarded promotion, as the table `promotions` states it beside each change."""
    rule, metric = settings.promote, settings.decisive_metric
    return (
        f"{rule_text(settings.recommend, metric)}. Promote automatically only past a cooldown of "
        f"{rule.cooldown} since the last change of champion, with at most {rule.max_error_share:.1%} errors, an "
        f"in-time rate no lower than the champion's, and a version never rolled back; within {rule.watch} of a "
        f"promotion, roll back when the previous champion is better by the same rule, or the new one's in-time "
        f"rate is lower at p < {1 - settings.recommend.confidence:.2g} (McNemar)"
    )
