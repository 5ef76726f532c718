"""The Delta record rows the rendezvous job writes from rdv.scores and rdv.results."""

from __future__ import annotations

import json
from datetime import datetime

from chispa import assert_df_equality

from rendezvous.sinks import result_rows, score_rows

POLICY = {"strategy": "preferred", "deadline_ms": 1000, "preference": ["champion"], "default_score": 0.0}


def messages(spark, values, published_at=datetime(2026, 1, 1, 0, 0, 2)):
    return spark.createDataFrame([(json.dumps(v), published_at) for v in values], "value string, timestamp timestamp")


def score(request_id, scored_at):
    return {
        "request_id": request_id,
        "model": "m",
        "model_version": "1",
        "role": "champion",
        "score": 0.2,
        "label": 0,
        "scored_at": scored_at,
        "event_time": "2026-01-01T00:00:00Z",
        "policy": POLICY,
    }


def test_a_score_is_in_time_within_the_deadline_and_late_after_the_grace(spark):
    scores = [
        score("a", "2026-01-01T00:00:01.000Z"),
        score("b", "2026-01-01T00:00:01.001Z"),
        score("c", "2026-01-01T00:00:01.500Z"),
        score("d", "2026-01-01T00:00:01.501Z"),
    ]
    actual = score_rows(messages(spark, scores), grace_ms=500).select(
        "request_id", "strategy", "latency_ms", "deadline_ms", "in_time", "late"
    )
    expected = spark.createDataFrame(
        [
            ("a", "preferred", 1000, 1000, True, False),
            ("b", "preferred", 1001, 1000, False, False),
            ("c", "preferred", 1500, 1000, False, False),
            ("d", "preferred", 1501, 1000, False, True),
        ],
        "request_id string, strategy string, latency_ms long, deadline_ms int, in_time boolean, late boolean",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_result_records_latency_to_the_topic_the_sla_and_the_time_to_decision(spark):
    result = {
        "request_id": "a",
        "event_time": "2026-01-01T00:00:00.500Z",
        "strategy": "preferred",
        "model": None,
        "model_version": None,
        "role": None,
        "score": 0.0,
        "label": None,
        "scored_at": None,
        "deadline_ms": 1000,
        "in_time": None,
        "reason": "default",
        "decided_at": "2026-01-01T00:00:01.700Z",
    }
    on_time = {
        **result,
        "request_id": "b",
        "event_time": "2026-01-01T00:00:01.000Z",
        "reason": "preferred",
        "decided_at": "2026-01-01T00:00:01.400Z",
    }
    actual = result_rows(messages(spark, [result, on_time])).select(
        "request_id", "reason", "published_at", "latency_ms", "sla_met", "decision_ms", "event_date"
    )
    expected = spark.createDataFrame(
        [
            ("a", "default", datetime(2026, 1, 1, 0, 0, 2), 1500, False, 1200, datetime(2026, 1, 1).date()),
            ("b", "preferred", datetime(2026, 1, 1, 0, 0, 2), 1000, True, 400, datetime(2026, 1, 1).date()),
        ],
        "request_id string, reason string, published_at timestamp, latency_ms long, sla_met boolean, "
        "decision_ms long, event_date date",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
