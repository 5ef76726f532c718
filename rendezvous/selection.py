"""Choosing the one answer per request from its models' scores, in Spark SQL.

The policy of a request (deadline_ms, preference, default_score) travels in its feature record
and is copied into every score, so the decision needs no lookups. A decision is made on two
paths, which never answer the same request twice:

* immediately, without state: a score from the request's first preference that came in time
  (scored_at - event_time <= deadline_ms) is the answer, in the micro-batch it arrives in;
* deferred, by a watermarked aggregation per request: once event time has passed the request
  by the largest deadline plus a grace period, a request without such a score is answered by
  the first preference that came in time, else the first preference that came at all (late),
  else the policy's default. Heartbeats on rdv.features keep event time moving when traffic stops.

Both paths come out of one query as result records (RESULT_RECORD), published to rdv.results.
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

PREFERRED, FALLBACK, DEFAULT = "preferred", "fallback", "default"

# One message on rdv.results: the answer to one request. model is null for a default answer.
RESULT_RECORD = StructType(
    [
        StructField("request_id", StringType()),
        StructField("event_time", TimestampType()),
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


def rank_scores(scores: DataFrame) -> DataFrame:
    """Add rank (1-based place of the score's model or role in the preference) and in_time (the
    score came within the request's deadline, on event time).

    A score that can never be the answer has no rank: its model is not in the preference, it is
    a canary's (never served, whatever a request asks), or it is an error record (no score).
    """
    matches = F.transform(
        F.col("policy.preference"), lambda p: (p == F.col("model")) | (p == F.col("role"))
    )
    servable = F.col("error").isNull() & (F.col("role") != F.lit("canary"))
    latency_ms = F.unix_millis("scored_at") - F.unix_millis("event_time")
    return scores.withColumn(
        "rank", F.when(servable, F.nullif(F.array_position(matches, True), F.lit(0))).cast("int")
    ).withColumn("in_time", F.col("error").isNull() & (latency_ms <= F.col("policy.deadline_ms")))


def _answer(ranked: DataFrame, reason: Column) -> DataFrame:
    return ranked.select(
        "request_id",
        "event_time",
        "model",
        "registered_model",
        "model_version",
        "role",
        "score",
        "label",
        "scored_at",
        F.col("policy.deadline_ms").alias("deadline_ms"),
        "in_time",
        reason.alias("reason"),
        F.current_timestamp().alias("decided_at"),
    )


def immediate_answers(ranked: DataFrame) -> DataFrame:
    """Requests answered by their first preference in time, as soon as that score arrives."""
    return _answer(ranked.where((F.col("rank") == 1) & F.col("in_time")), F.lit(PREFERRED))


def deferred_answers(feature_records: DataFrame, ranked: DataFrame, decision_delay_ms: int) -> DataFrame:
    """One answer per request that had no immediate one, once its deadline has surely passed.

    feature_records includes heartbeats: they move the watermark and never become answers.
    """
    requests = feature_records.select(
        "kind",
        "request_id",
        "event_time",
        "policy",
        *[F.lit(None).cast(t).alias(c) for c, t in (("model", "string"), ("registered_model", "string"),
                                                    ("model_version", "string"),
                                                    ("role", "string"), ("score", "double"), ("label", "int"),
                                                    ("scored_at", "timestamp"), ("rank", "int"),
                                                    ("in_time", "boolean"))],
    )
    scores = ranked.select(F.lit("score").alias("kind"), *requests.columns[1:])
    chosen = F.struct("model", "registered_model", "model_version", "role", "score", "label", "scored_at", "in_time")
    per_request = (
        requests.unionByName(scores)
        .withWatermark("event_time", f"{decision_delay_ms} milliseconds")
        # Heartbeats are aggregated too and dropped after (has_request is false): a filter here
        # would be pushed below the watermark by the optimizer, and the watermark would stall.
        .groupBy("request_id", "event_time")
        .agg(
            F.max(F.col("kind") == "request").alias("has_request"),
            F.max(F.coalesce((F.col("rank") == 1) & F.col("in_time"), F.lit(False))).alias("answered"),
            F.first(F.when(F.col("kind") == "request", F.col("policy")), ignorenulls=True).alias("policy"),
            F.min_by(chosen, F.when(F.col("in_time"), F.col("rank"))).alias("in_time_choice"),
            F.min_by(chosen, F.col("rank")).alias("late_choice"),
        )
        .where(F.col("has_request") & ~F.col("answered"))
    )
    choice = F.coalesce("in_time_choice", "late_choice")
    return per_request.select(
        "request_id",
        "event_time",
        choice.model.alias("model"),
        choice.registered_model.alias("registered_model"),
        choice.model_version.alias("model_version"),
        choice.role.alias("role"),
        F.coalesce(choice.score, F.col("policy.default_score")).alias("score"),
        choice.label.alias("label"),
        choice.scored_at.alias("scored_at"),
        F.col("policy.deadline_ms").alias("deadline_ms"),
        choice.in_time.alias("in_time"),
        F.when(choice.isNull(), F.lit(DEFAULT)).otherwise(F.lit(FALLBACK)).alias("reason"),
        F.current_timestamp().alias("decided_at"),
    )


def answers(feature_records: DataFrame, scores: DataFrame, decision_delay_ms: int) -> DataFrame:
    """Exactly one result record per request, immediate or deferred, in RESULT_RECORD's columns."""
    ranked = rank_scores(scores)
    return (
        immediate_answers(ranked)
        .unionByName(deferred_answers(feature_records, ranked, decision_delay_ms))
        .select(*RESULT_RECORD.fieldNames())
    )
