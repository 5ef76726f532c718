"""Is the challenger better, and how sure are we? Paired evidence and a recommendation per challenger.

Every challenger scored the very requests the champion scored, so the comparison is paired: on
the labelled requests of the evaluation period (the last `recommend.over` of event time), McNemar's
test of the two models' decisions (classification) and a paired bootstrap interval of the
improvement in the decisive metric. The recommendation follows the rule in conf (RecommendationRule),
and the row says which rule, so that a reader can check the verdict against the evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from comparison.metrics import evaluate, mcnemar, paired_bootstrap
from comparison.tables import champion_answers, labelled_rows
from rdv.config import CompareConfig, RecommendationRule
from rdv.durations import duration_ms

PROMOTE, KEEP_WATCHING, RETIRE = "promote", "keep watching", "retire"


@dataclass(frozen=True)
class Evidence:
    """One challenger against the champion, as a row of the table `comparison_tests`."""

    challenger: str
    champion: str
    metric: str
    labelled: int  # labelled requests both scored in the evaluation period
    resampled: int  # of which the bootstrap used (all, unless more than recommend.max_rows)
    evaluated_from: datetime | None
    evaluated_to: datetime | None
    champion_value: float | None
    challenger_value: float | None
    effect: float | None  # the challenger's improvement: positive is better, in the metric's units
    ci_low: float | None
    ci_high: float | None
    confidence: float
    mcnemar_champion_only: int | None  # requests only the champion decided right
    mcnemar_challenger_only: int | None
    mcnemar_statistic: float | None
    mcnemar_p_value: float | None
    mcnemar_method: str | None
    recommendation: str
    rule: str


def rule_text(rule: RecommendationRule, metric: str) -> str:
    return (
        f"promote when at least {rule.min_labelled} labelled requests and the whole {rule.confidence:.0%} "
        f"interval of the {metric} improvement is above {rule.min_effect:g}; retire when it is all below "
        f"{-rule.min_effect:g}; otherwise keep watching"
    )


def recommend(rule: RecommendationRule, labelled: int, low: float | None, high: float | None) -> str:
    if labelled < rule.min_labelled or low is None or high is None or np.isnan(low) or np.isnan(high):
        return KEEP_WATCHING
    if low > rule.min_effect:
        return PROMOTE
    if high < -rule.min_effect:
        return RETIRE
    return KEEP_WATCHING


def challengers(rows: DataFrame) -> list[str]:
    """The models whose latest role is challenger."""
    latest = rows.groupBy("model").agg(F.max_by("role", "scored_at").alias("role"))
    return sorted(r.model for r in latest.where(F.col("role") == "challenger").collect())


def paired_labelled(rows: DataFrame, labels: DataFrame, over_ms: int) -> DataFrame:
    """The labelled requests of the evaluation period with each model's and the champion's answer:
    (request_id, event_time, model, truth, score, decision, champion, champion_score, champion_decision)."""
    labelled = labelled_rows(rows, labels)
    latest = labelled.agg(F.max("event_time").alias("_latest"))
    since = F.col("_latest") - F.make_dt_interval(secs=F.lit(over_ms / 1000.0))
    recent = labelled.crossJoin(F.broadcast(latest)).where(F.col("event_time") >= since).drop("_latest")
    return recent.join(champion_answers(rows), "request_id")


def _evidence(config: CompareConfig, challenger: str, pairs: pd.DataFrame, labelled: int) -> Evidence:
    rule, metric = config.recommend, config.decisive_metric
    champion_name = pairs["champion"].mode().iloc[0] if len(pairs) else ""
    # The Evidence fields each case fills, gathered per case: Any, as each holds several types.
    untested: dict[str, Any] = dict.fromkeys(
        ("mcnemar_champion_only", "mcnemar_challenger_only", "mcnemar_statistic", "mcnemar_p_value", "mcnemar_method")
    )
    # toPandas gives times naive, in the session's time zone (UTC, rdv/spark.py).
    times = pd.to_datetime(pairs["event_time"]).dt.tz_localize("UTC")
    base: dict[str, Any] = dict(
        challenger=challenger,
        champion=champion_name,
        metric=metric,
        labelled=labelled,
        resampled=len(pairs),
        evaluated_from=times.min().to_pydatetime() if len(pairs) else None,
        evaluated_to=times.max().to_pydatetime() if len(pairs) else None,
        confidence=rule.confidence,
        rule=rule_text(rule, metric),
    )
    if len(pairs) == 0:
        unmeasured: dict[str, Any] = dict.fromkeys(
            ("champion_value", "challenger_value", "effect", "ci_low", "ci_high")
        )
        return Evidence(**base, **unmeasured, **untested, recommendation=KEEP_WATCHING)
    truth = pairs["truth"].to_numpy(float)
    champion = (pairs["champion_score"].to_numpy(float), pairs["champion_decision"].to_numpy(float, na_value=np.nan))
    challenger_answers = (pairs["score"].to_numpy(float), pairs["decision"].to_numpy(float, na_value=np.nan))
    interval = paired_bootstrap(metric, truth, champion, challenger_answers, rule.resamples, rule.confidence)
    tested: dict[str, Any] = untested
    if config.task == "classification":  # McNemar's test is about decisions, which a regression has not
        test = mcnemar(truth, champion[1], challenger_answers[1])
        tested = {f"mcnemar_{k}": v for k, v in asdict(test).items()}
    return Evidence(
        **base,
        **tested,
        champion_value=float(evaluate(metric, truth, *champion)),
        challenger_value=float(evaluate(metric, truth, *challenger_answers)),
        effect=interval.effect,
        ci_low=interval.low,
        ci_high=interval.high,
        recommendation=recommend(rule, labelled, interval.low, interval.high),
    )


def evidence(rows: DataFrame, labels: DataFrame, config: CompareConfig) -> list[Evidence]:
    """The evidence about every challenger in rows (comparison/tables.model_rows)."""
    pairs = paired_labelled(rows, labels, duration_ms(config.recommend.over)).persist()
    try:
        found = []
        for name in challengers(rows):
            mine = pairs.where(F.col("model") == name)
            labelled = mine.count()
            if labelled > config.recommend.max_rows:
                mine = mine.sample(fraction=config.recommend.max_rows / labelled, seed=0)
            # In request order: the same requests resampled with the same seed give the same interval.
            pairs_of = pd.DataFrame(mine.toPandas()).sort_values("request_id", ignore_index=True)
            found.append(_evidence(config, name, pairs_of, labelled))
        return found
    finally:
        pairs.unpersist()


def evidence_rows(found: list[Evidence]) -> list[tuple]:
    """The evidence as rows in Evidence's field order."""
    return [tuple(asdict(e).values()) for e in found]
