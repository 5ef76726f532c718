"""Guarded promotion: `rdv compare` moving @champion itself, and back on a regression (compare.promote).

It runs after the comparison tables, on the same rows, and only with compare.promote.enabled.
Each run does one of three things:

- within the watch after a promotion, it compares the new champion with the previous one (which
  the registry's `promote` made the challenger, so it keeps scoring the same requests) since the
  change, and rolls back on a regression (comparison/guards.py);
- otherwise, past the cooldown, it promotes the challenger the recommendation and every guard let
  through, with the evidence of the requests since the last change of champion only (before it,
  other versions scored);
- or it says why nothing moved.

Aliases move in the registry (models/registry.py), and the model jobs follow at their next
micro-batch (the marker `rdv promote` touches too): nothing restarts. Every change is appended to
the Delta table `promotions` with its evidence and the rule as text, and so is a person's
`rdv promote`, from the registry's record of the last change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType, TimestampType

from comparison.guards import Candidate, Health, choose, guard_text, in_cooldown, regression
from comparison.metrics import McNemar, mcnemar
from comparison.significance import PROMOTE, Evidence, evidence
from models.following import announce_alias_change
from models.registry import (
    BY_COMPARE,
    BY_PERSON,
    Promotion,
    last_change,
    promote,
    registered_name,
    roll_back,
    rolled_back,
)
from rdv.config import PipelineConfig
from rdv.durations import duration_ms

TABLE = "promotions"
NO_SCORES = Health(0, 0, 0)
PROMOTION_ROW = StructType(
    [
        StructField(name, kind())
        for name, kind in (
            ("at", TimestampType),
            ("action", StringType),  # promote or rollback
            ("by", StringType),  # rdv compare, or rdv promote (a person)
            ("registered_model", StringType),
            ("from_version", StringType),
            ("to_version", StringType),
            ("model", StringType),  # the model config that scored to_version, as a challenger, before the change
            ("metric", StringType),
            ("labelled", LongType),
            ("effect", DoubleType),  # to_version's improvement over from_version
            ("ci_low", DoubleType),
            ("ci_high", DoubleType),
            ("mcnemar_p_value", DoubleType),
            ("in_time_from", DoubleType),  # the in-time rates of the two versions over the evidence
            ("in_time_to", DoubleType),
            ("error_share", DoubleType),  # of to_version's scores
            ("reason", StringType),
            ("rule", StringType),
        )
    ]
)


@dataclass(frozen=True)
class Step:
    """What a run of the promotion step did: the change, if any, and what it says about it."""

    change: Promotion | None
    lines: list[str]


def health(rows: DataFrame) -> dict[str, Health]:
    """Scores, errors and scores in time per model of rows (comparison/tables.model_rows)."""
    counts = rows.groupBy("model").agg(
        F.count("*").alias("scored"),
        F.count("error").alias("errors"),
        F.sum(F.col("in_time").cast("long")).alias("in_time"),
    )
    return {r.model: Health(r.scored, r.errors, r.in_time or 0) for r in counts.collect()}


def latest_roles(rows: DataFrame) -> dict[str, tuple[str, str]]:
    """model -> (role, version) of its latest score."""
    latest = rows.groupBy("model").agg(F.max_by(F.struct("role", "model_version"), "scored_at").alias("last"))
    return {r.model: (r["last"]["role"], r["last"]["model_version"]) for r in latest.collect()}


def in_time_test(rows: DataFrame, champion: str, other: str) -> McNemar:
    """McNemar's test of two models' in-time flags on the requests both scored."""
    flags = [
        rows.where(F.col("model") == name).select("request_id", F.col("in_time").alias(alias))
        for name, alias in ((champion, "a"), (other, "b"))
    ]
    pairs = pd.DataFrame(flags[0].join(flags[1], "request_id").toPandas())
    # A score without an in-time flag (null) was not in time.
    a, b = pairs["a"].eq(True).to_numpy(float), pairs["b"].eq(True).to_numpy(float)
    return mcnemar(np.ones(len(pairs)), a, b)


def _since(rows: DataFrame, at: datetime | None) -> DataFrame:
    return rows if at is None else rows.where(F.col("event_time") >= F.lit(at))


def _row(
    done: Promotion,
    model: str | None,
    found: Evidence | None,
    to: Health | None,
    frm: Health | None,
    reason: str,
    rule: str,
) -> tuple:
    p_value = found.mcnemar_p_value if found is not None else None
    return (
        done.at,
        done.action,
        done.by,
        done.registered_model,
        done.previous_champion,
        done.champion,
        model,
        found.metric if found else None,
        found.labelled if found else None,
        found.effect if found else None,
        found.ci_low if found else None,
        found.ci_high if found else None,
        p_value,
        frm.in_time_rate if frm else None,
        to.in_time_rate if to else None,
        to.error_share if to else None,
        reason,
        rule,
    )


def _append(spark: SparkSession, config: PipelineConfig, row: tuple) -> None:
    spark.createDataFrame([row], PROMOTION_ROW).write.format("delta").mode("append").save(config.table(TABLE))


def _recorded(spark: SparkSession, config: PipelineConfig, at: datetime) -> bool:
    path = config.table(TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return False
    return spark.read.format("delta").load(path).where(F.col("at") == F.lit(at)).limit(1).count() > 0


def promote_if_due(
    spark: SparkSession, config: PipelineConfig, rows: DataFrame, labels: DataFrame, now: datetime
) -> Step:
    """The promotion step over rows (comparison/tables.model_rows) and labels, at time now."""
    settings = config.compare
    rule, tracking = settings.promote, config.tracking_uri
    text = guard_text(settings)
    roles = latest_roles(rows)
    champion = next((m for m, (role, _) in roles.items() if role == "champion"), None)
    if champion is None:
        return Step(None, ["no champion has scored yet"])
    registered = registered_name(config.models[champion].uri) if champion in config.models else None
    if registered is None:
        return Step(None, [f"the champion {champion} follows no registry alias: nothing to move"])
    last = last_change(registered, tracking)
    if last is not None and last.by == BY_PERSON and not _recorded(spark, config, last.at):
        _append(spark, config, _row(last, None, None, None, None, "promoted by a person", ""))
    if last is not None and last.action == "promote" and now - last.at < _span(rule.watch):
        return _watch(spark, config, rows, labels, last, champion, text)
    if reason := in_cooldown(last.at if last else None, now, _span(rule.cooldown)):
        return Step(None, [reason])
    recent = _since(rows, last.at if last else None)
    healths = health(recent)
    candidates, lines = [], []
    for found in evidence(recent, labels, settings):
        if found.recommendation != PROMOTE:
            continue
        name = found.challenger
        if name not in config.models or registered_name(config.models[name].uri) != registered:
            lines.append(f"{name}: not a version of {registered}, whose aliases the champion follows")
            continue
        version = roles[name][1]
        candidates.append(Candidate(found, healths[name], version, rolled_back(registered, version, tracking)))
    best, held = choose(candidates, healths.get(champion, NO_SCORES), rule)
    lines += [f"held back: {reason}" for reason in held]
    if best is None:
        return Step(None, lines or ["no challenger is recommended for promotion"])
    done = promote(registered, best.version, tracking, by=BY_COMPARE)
    announce_alias_change(config.alias_marker)
    found = best.evidence
    reason = f"{found.challenger} is better on {found.metric}, and every guard passed"
    _append(
        spark, config, _row(done, found.challenger, found, best.health, healths.get(champion, NO_SCORES), reason, text)
    )
    return Step(done, [*lines, f"promoted {registered} version {done.champion} ({found.challenger}): {reason}"])


def _watch(
    spark: SparkSession,
    config: PipelineConfig,
    rows: DataFrame,
    labels: DataFrame,
    last: Promotion,
    champion: str,
    text: str,
) -> Step:
    """Within the watch after `last`: roll back when the new champion does worse than the previous."""
    until = last.at + _span(config.compare.promote.watch)
    watching = f"watching {last.registered_model} version {last.champion} until {until:%Y-%m-%d %H:%M:%S} UTC"
    recent = _since(rows, last.at)
    previous = next(
        (
            m
            for m, (role, version) in latest_roles(recent).items()
            if role == "challenger" and version == last.previous_champion
        ),
        None,
    )
    if previous is None:
        return Step(None, [f"{watching}: no score of the previous champion since the change yet"])
    found = next((e for e in evidence(recent, labels, config.compare) if e.challenger == previous), None)
    healths = health(recent)
    confidence = config.compare.recommend.confidence
    new = healths.get(champion, NO_SCORES)
    reason = regression(found, in_time_test(recent, champion, previous), new, healths[previous], confidence)
    if reason is None:
        return Step(None, [f"{watching}: no regression so far"])
    done = roll_back(last.registered_model, str(last.previous_champion), config.tracking_uri)
    announce_alias_change(config.alias_marker)
    _append(spark, config, _row(done, previous, found, healths[previous], new, reason, text))
    return Step(done, [f"rolled {done.registered_model} back to version {done.champion}: {reason}"])


def _span(duration: str) -> timedelta:
    return timedelta(milliseconds=duration_ms(duration))
