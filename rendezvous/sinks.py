"""The rendezvous's records in Delta: results from rdv.results, every score from rdv.scores.

Answers go to Kafka first, on the latency path; these queries copy the topics into Delta on a
slower trigger, with the plain Delta streaming sink (exactly once with its checkpoint). So the
tables hold exactly what consumers saw, and a Delta commit never delays an answer.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from models.scoring import SCORE_RECORD
from rendezvous.selection import RESULT_RECORD


def result_rows(messages: DataFrame) -> DataFrame:
    """rdv.results messages as rows; published_at is when the answer reached the topic, and
    latency_ms runs from the event to then."""
    parsed = messages.select(
        F.from_json(F.col("value").cast("string"), RESULT_RECORD).alias("r"), F.col("timestamp").alias("published_at")
    )
    return parsed.select(
        "r.*",
        "published_at",
        (F.unix_millis("published_at") - F.unix_millis("r.event_time")).alias("latency_ms"),
        F.to_date("r.event_time").alias("event_date"),
    )


def score_rows(messages: DataFrame) -> DataFrame:
    """rdv.scores messages as rows: one per request and model; late marks a score that came
    after the request's deadline, so it could not be the answer (it is kept for comparison)."""
    parsed = messages.select(F.from_json(F.col("value").cast("string"), SCORE_RECORD).alias("s")).select("s.*")
    latency_ms = F.unix_millis("scored_at") - F.unix_millis("event_time")
    return parsed.select(
        *[c for c in SCORE_RECORD.fieldNames() if c != "policy"],
        latency_ms.alias("latency_ms"),
        F.col("policy.deadline_ms").alias("deadline_ms"),
        (latency_ms > F.col("policy.deadline_ms")).alias("late"),
        F.to_date("event_time").alias("event_date"),
    )
