"""Choosing the one answer per request from its models' scores, in Spark SQL.

The policy of a request (strategy, deadline_ms, preference, default_score, criterion) travels in
its feature record and in every score, so a decision needs no lookups and no Python per request.
Each request is answered exactly once, on one of two paths of one query:

* early: a score that satisfies the policy on its own answers the request in the micro-batch it
  arrives in: for preferred, rules and split, the first preference's score in time; for first,
  any preference's score in time. A deduplication keyed by request keeps only the first such
  score (in its order on rdv.scores), so replayed or duplicate scores never answer twice.
* at the decision point: a watermarked aggregation per request answers the others once event
  time has passed the request's own deadline plus `grace` (or the lateness the features job
  accepts, where that is longer: see rdv.config.Timing): the policy's choice among the scores
  in time, else among the late scores that came within the grace, else the default answer.

Both paths are keyed by (request_id, decide_at) and read one shared shuffle of the rows, so a
micro-batch reads and parses its topics once (see rendezvous_rows and _shuffled).

Every time a decision depends on is event data (event_time, scored_at, deadline_ms) and every tie
is broken by the order on rdv.scores, so a replay of the same topics decides byte for byte the
same. The wall clock only says when a decision is published: the watermark lets a score take
`transit` to reach the rendezvous before a request that waits for it is decided.
See docs/rendezvous.md for the timeline and every edge case.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from features.records import feature_record_schema
from models.scoring import SCORE_RECORD
from rdv.config import Timing

PREFERRED, FALLBACK, DEFAULT = "preferred", "fallback", "default"
# Strategies whose answer is the first preference in time, once the features job resolved the
# preference (rules and split choose it per request).
_BY_PREFERENCE = ("preferred", "rules", "split")

# One message on rdv.results: the answer to one request. model is null for a default answer.
RESULT_RECORD = StructType(
    [
        StructField("request_id", StringType()),
        StructField("event_time", TimestampType()),
        StructField("strategy", StringType()),
        StructField("rule", StringType()),
        StructField("arm", StringType()),
        StructField("model", StringType()),
        StructField("registered_model", StringType()),
        StructField("model_version", StringType()),
        StructField("role", StringType()),
        StructField("score", DoubleType()),
        StructField("label", IntegerType()),
        StructField("scored_at", TimestampType()),
        StructField("deadline_ms", IntegerType()),
        StructField("in_time", BooleanType()),
        StructField("reason", StringType()),
        StructField("decided_at", TimestampType()),
    ]
)

_CHOSEN = ("model", "registered_model", "model_version", "role", "score", "label", "scored_at", "in_time")


def _wait(timing: Timing, deadline_ms: Column) -> Column:
    """From a request's event time to its decision point: its deadline and the grace, and never
    less than the lateness the features job accepts (rdv.config.Timing says why)."""
    return F.greatest(deadline_ms + timing.grace_ms, F.lit(timing.lateness_ms))


def _millis_after(time: Column, millis: Column) -> Column:
    return F.timestamp_millis(F.unix_millis(time) + millis)


def rank_scores(scores: DataFrame, grace_ms: int) -> DataFrame:
    """Judge each score on its own: rank (1-based place of its model or role in the preference),
    in_time (scored_at - event_time <= deadline_ms), in_grace (late, but within the grace), and
    pick, the key by which the request's policy orders candidates (smallest first).

    A score that can never be the answer has no rank: its model is not in the preference, it is
    a canary's (never served, whatever a request asks), or it is an error record (no score).
    scores needs an `arrival` column, ordered like the scores' offsets on rdv.scores.
    """
    matches = F.transform(F.col("policy.preference"), lambda p: (p == F.col("model")) | (p == F.col("role")))
    servable = F.col("error").isNull() & (F.col("role") != F.lit("canary"))
    latency_ms = F.unix_millis("scored_at") - F.unix_millis("event_time")
    deadline_ms = F.col("policy.deadline_ms")
    strategy = F.col("policy.strategy")
    criterion = F.col("policy.criterion")
    merit = (
        F.when(criterion == "confidence", F.greatest(F.col("score"), 1 - F.col("score")))
        .when(criterion == "highest_score", F.col("score"))
        .when(criterion == "lowest_score", -F.col("score"))
    )
    return (
        scores.withColumn("rank", F.when(servable, F.nullif(F.array_position(matches, True), F.lit(0))).cast("int"))
        .withColumn("in_time", F.col("error").isNull() & (latency_ms <= deadline_ms))
        .withColumn("in_grace", F.col("error").isNull() & ~F.col("in_time") & (latency_ms <= deadline_ms + grace_ms))
        .withColumn(
            "pick",
            F.struct(
                F.when(strategy == "best", -merit).otherwise(F.lit(0.0)).alias("merit"),
                F.when(strategy == "first", F.lit(0)).otherwise(F.col("rank")).alias("place"),
                F.col("arrival"),
            ),
        )
    )


def _early() -> Column:
    """A score that answers its request on its own, as soon as it arrives: for preferred, rules and
    split, the first preference's score in time; for first, any preference's score in time."""
    strategy = F.col("policy.strategy")
    satisfies = F.col("in_time") & (
        (strategy.isin(*_BY_PREFERENCE) & (F.col("rank") == 1)) | ((strategy == "first") & F.col("rank").isNotNull())
    )
    return F.coalesce(satisfies, F.lit(False))


def rendezvous_rows(messages: DataFrame, scores_topic: str, timing: Timing) -> DataFrame:
    """Kafka rows of rdv.features, rdv.heartbeats and rdv.scores (topic, partition, offset, value)
    as one stream of requests, heartbeats and ranked scores, keyed by (request_id, decide_at).

    One projection over one scan: each row's value is parsed as a feature record or as a score by
    its topic, where a filter per topic and a union would read the source twice in every
    micro-batch. A feature record of another kind (such as a heartbeat of an older version) is
    skipped. A score's arrival, its place on rdv.scores, breaks ties: all scores of a request share
    a partition (keyed by request_id), so the smaller offset arrived first, live and on a replay.

    decide_at is a request's decision point, event_time + _wait(deadline_ms), on requests and
    scores alike. A heartbeat's decide_at is that of a request with the longest deadline made
    at its time, so heartbeats move the watermark exactly as such requests would.
    """
    is_score = F.col("topic") == scores_topic
    text = F.col("value").cast("string")
    parsed = messages.select(
        is_score.alias("is_score"),
        F.when(~is_score, F.from_json(text, feature_record_schema(None))).alias("request"),
        F.when(is_score, F.from_json(text, SCORE_RECORD)).alias("score"),
        F.when(is_score, F.struct("partition", "offset")).alias("arrival"),
    )
    flat = parsed.select(
        F.when(F.col("is_score"), F.lit("score")).otherwise(F.col("request.kind")).alias("kind"),
        *[
            F.coalesce(F.col(f"score.{c}"), F.col(f"request.{c}")).alias(c)
            for c in ("request_id", "event_time", "policy")
        ],
        *[
            F.col(f"score.{c}").alias(c)
            for c in SCORE_RECORD.fieldNames()
            if c not in ("request_id", "event_time", "policy")
        ],
        "arrival",
    ).where(F.col("kind").isin("request", "heartbeat", "score"))
    ranked = rank_scores(flat, timing.grace_ms)
    decide_at = _millis_after(F.col("event_time"), _wait(timing, F.col("policy.deadline_ms")))
    return ranked.select(
        "kind",
        "request_id",
        "event_time",
        "policy",
        F.when(F.col("kind") == "heartbeat", _millis_after(F.col("event_time"), F.lit(timing.longest_wait_ms)))
        .otherwise(decide_at)
        .alias("decide_at"),
        *_CHOSEN,
        "rank",
        "in_grace",
        # A request's row has no candidate to pick.
        F.when(F.col("kind") == "score", F.col("pick")).alias("pick"),
    )


def _result(request: Column, choice: Column, reason: Column, decided_at: Column) -> list[Column]:
    """RESULT_RECORD's columns from the request's (request_id, event_time, policy) and the choice."""
    return [
        request.request_id.alias("request_id"),
        request.event_time.alias("event_time"),
        request.policy.strategy.alias("strategy"),
        request.policy.rule.alias("rule"),
        request.policy.arm.alias("arm"),
        *[choice[c].alias(c) for c in _CHOSEN if c not in ("score", "in_time")],
        F.coalesce(choice.score, request.policy.default_score).alias("score"),
        request.policy.deadline_ms.alias("deadline_ms"),
        choice.in_time.alias("in_time"),
        reason.alias("reason"),
        decided_at.alias("decided_at"),
    ]


def _shuffled(rows: DataFrame, watermark_ms: int) -> DataFrame:
    """rows hash-partitioned by (request_id, decide_at), watermarked, as (request_id, decide_at,
    early, row): the one input of both stateful operators.

    Both operators are keyed by (request_id, decide_at), so Spark reuses this one shuffle for both
    and a micro-batch reads and parses rdv.features and rdv.scores once, not once per operator.
    Reuse needs the plans below the shuffle to be identical in both branches, hence its shape:
    every other column travels in the struct `row`, which both branches use, so the optimizer
    prunes no column below the shuffle in one branch only; `early` is computed here once, and the
    early branch's filter on it is fenced (see answers). The watermark comes after the shuffle:
    Spark finds each stateful operator's watermark in the operator's own subtree, and a reused
    shuffle would hide it from one of them.
    """
    keys = ["request_id", "decide_at"]
    packed = F.struct(*[c for c in rows.columns if c not in keys]).alias("row")
    return (
        rows.select(*keys, _early().alias("early"), packed)
        .repartition(*keys)
        .withWatermark("decide_at", f"{watermark_ms} milliseconds")
    )


def answers(messages: DataFrame, scores_topic: str, timing: Timing) -> DataFrame:
    """Exactly one result record per request (RESULT_RECORD), early or at its decision point, from
    the Kafka rows of rdv.features, rdv.heartbeats and rdv.scores (see rendezvous_rows)."""
    shuffled = _shuffled(rendezvous_rows(messages, scores_topic, timing), timing.watermark_ms)
    rows = shuffled.select("request_id", "decide_at", "early", "row.*")
    row = F.struct("request_id", "event_time", "policy")
    chosen = F.struct(*_CHOSEN)

    # Not deterministic to the optimizer, so it is not pushed below the shared shuffle (which would
    # then differ between the branches and run twice); true for every partition, so it filters on
    # `early` alone.
    fenced_early = F.when(F.spark_partition_id() >= 0, F.col("early"))
    early = shuffled.where(fenced_early).dropDuplicates(["request_id", "decide_at"]).select("request_id", "row.*")
    early_answers = early.select(*_result(row, chosen, F.lit(PREFERRED), F.col("scored_at")))

    candidate = F.col("rank").isNotNull()
    per_request = (
        rows.groupBy("request_id", "decide_at")
        .agg(
            # Heartbeats are aggregated too and dropped after: a filter before the aggregation
            # would be pushed below the watermark and the shuffle, and hide them from both.
            F.max(F.col("kind") != "heartbeat").alias("is_request"),
            F.max("early").alias("answered"),
            F.max(F.struct("event_time", "policy")).alias("request"),
            F.min_by(chosen, F.when(candidate & F.col("in_time"), F.col("pick"))).alias("in_time_choice"),
            F.min_by(chosen, F.when(candidate & F.col("in_grace"), F.col("pick"))).alias("late_choice"),
        )
        .where(F.col("is_request") & ~F.col("answered"))
    )
    choice = F.coalesce("in_time_choice", "late_choice")
    reason = (
        F.when(choice.isNull(), F.lit(DEFAULT))
        .when(F.col("in_time_choice").isNotNull() & (F.col("request.policy.strategy") == "best"), F.lit(PREFERRED))
        .otherwise(F.lit(FALLBACK))
    )
    request = F.struct("request_id", "request.event_time", "request.policy")
    decided_answers = per_request.select(*_result(request, choice, reason, F.col("decide_at")))
    return early_answers.unionByName(decided_answers).select(*RESULT_RECORD.fieldNames())
