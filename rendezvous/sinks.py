"""The rendezvous's records in Delta: results from rdv.results, every score from rdv.scores.

Answers go to Kafka first, on the latency path; these rows are recorded from the topics into Delta
on a slower trigger (rdv.tables.KeyedTable: each key once, though Kafka may hold a re-sent copy).
So the tables hold what consumers saw, and a Delta commit never delays an answer.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from models.scoring import SCORE_RECORD
from rendezvous.selection import RESULT_RECORD


def result_rows(messages: DataFrame) -> DataFrame:
    """rdv.results messages as rows, with the service the business got: published_at (when the
    answer reached the topic), latency_ms (event to then), sla_met (within the request's
    deadline), and decision_ms (event to the decision, on event time: the same on a replay)."""
    parsed = messages.select(
        F.from_json(F.col("value").cast("string"), RESULT_RECORD).alias("r"), F.col("timestamp").alias("published_at")
    )
    latency_ms = F.unix_millis("published_at") - F.unix_millis("r.event_time")
    return parsed.select(
        "r.*",
        "published_at",
        latency_ms.alias("latency_ms"),
        (latency_ms <= F.col("r.deadline_ms")).alias("sla_met"),
        (F.unix_millis("r.decided_at") - F.unix_millis("r.event_time")).alias("decision_ms"),
        F.to_date("r.event_time").alias("event_date"),
    )


def score_rows(messages: DataFrame, grace_ms: int) -> DataFrame:
    """rdv.scores messages as rows: one per request and model. in_time: the score met the
    request's deadline; late: it came after the request's decision point (deadline + grace), so
    it could not be the answer and is kept for the comparison only."""
    parsed = messages.select(F.from_json(F.col("value").cast("string"), SCORE_RECORD).alias("s")).select("s.*")
    latency_ms = F.unix_millis("scored_at") - F.unix_millis("event_time")
    return parsed.select(
        *[c for c in SCORE_RECORD.fieldNames() if c != "policy"],
        F.col("policy.strategy").alias("strategy"),
        latency_ms.alias("latency_ms"),
        F.col("policy.deadline_ms").alias("deadline_ms"),
        (latency_ms <= F.col("policy.deadline_ms")).alias("in_time"),
        (latency_ms > F.col("policy.deadline_ms") + grace_ms).alias("late"),
        F.to_date("event_time").alias("event_date"),
    )
