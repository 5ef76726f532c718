"""The Delta record rows the rendezvous job writes from rdv.scores and rdv.results."""
from __future__ import annotations

import json
from datetime import datetime

from chispa import assert_df_equality

from rendezvous.sinks import result_rows, score_rows

POLICY = {"deadline_ms": 1000, "preference": ["champion"], "default_score": 0.0}


def messages(spark, values, published_at=datetime(2026, 1, 1, 0, 0, 2)):
    return spark.createDataFrame([(json.dumps(v), published_at) for v in values], "value string, timestamp timestamp")


def test_a_score_after_the_deadline_is_kept_and_marked_late(spark):
    scores = [
        {"request_id": "a", "model": "m", "model_version": "1", "role": "champion", "score": 0.2, "label": 0,
         "scored_at": "2026-01-01T00:00:00.999Z", "event_time": "2026-01-01T00:00:00Z", "policy": POLICY},
        {"request_id": "b", "model": "m", "model_version": "1", "role": "champion", "score": 0.8, "label": 1,
         "scored_at": "2026-01-01T00:00:01.001Z", "event_time": "2026-01-01T00:00:00Z", "policy": POLICY},
    ]
    actual = score_rows(messages(spark, scores)).select("request_id", "latency_ms", "deadline_ms", "late")
    expected = spark.createDataFrame([("a", 999, 1000, False), ("b", 1001, 1000, True)],
                                     "request_id string, latency_ms long, deadline_ms int, late boolean")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_result_latency_runs_from_the_event_to_the_answer_on_the_topic(spark):
    result = {"request_id": "a", "event_time": "2026-01-01T00:00:00.500Z", "model": None, "model_version": None,
              "role": None, "score": 0.0, "label": None, "scored_at": None, "deadline_ms": 1000, "in_time": None,
              "reason": "default", "decided_at": "2026-01-01T00:00:01.900Z"}
    row = result_rows(messages(spark, [result])).first()
    assert (row.request_id, row.reason, row.published_at, row.latency_ms) == ("a", "default", datetime(2026, 1, 1, 0, 0, 2), 1500)
    assert str(row.event_date) == "2026-01-01"
