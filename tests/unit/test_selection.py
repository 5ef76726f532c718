"""The rendezvous rules: ranking, immediate answers, and deferred answers on a real file stream."""
from __future__ import annotations

import json
from datetime import datetime

import pytest
from chispa import assert_df_equality

from features.spec import FEATURE_RECORD
from models.scoring import SCORE_RECORD
from rendezvous.selection import answers, immediate_answers, rank_scores

POLICY = {"deadline_ms": 1000, "preference": ["champion", "gbt"], "default_score": -1.0}
T0 = "2026-01-01T00:00:00Z"


def score(request_id, model, role, scored_at, event_time=T0, policy=POLICY, error=None):
    return {"request_id": request_id, "model": model, "registered_model": "fraud", "model_version": "3", "role": role,
            "score": None if error else 0.9, "label": None if error else 1, "error": error,
            "scored_at": scored_at, "event_time": event_time, "policy": policy}


def request(request_id, event_time=T0):
    return {"schema_version": 1, "kind": "request", "request_id": request_id, "event_time": event_time,
            "features": {}, "policy": POLICY}


def heartbeat(event_time):
    return {"schema_version": 1, "kind": "heartbeat", "event_time": event_time}


def frame(spark, schema, records):
    return spark.read.schema(schema).json(spark.sparkContext.parallelize([json.dumps(r) for r in records]))


def test_rank_is_the_place_of_the_model_or_its_role_in_the_preference(spark):
    scores = frame(spark, SCORE_RECORD, [
        score("a", "logreg", "champion", "2026-01-01T00:00:00.400Z"),
        score("a", "gbt", "challenger", "2026-01-01T00:00:01.000Z"),
        score("a", "canary", "canary", "2026-01-01T00:00:01.001Z"),
    ])
    actual = rank_scores(scores).select("model", "rank", "in_time")
    expected = spark.createDataFrame([("logreg", 1, True), ("gbt", 2, True), ("canary", None, False)],
                                     "model string, rank int, in_time boolean")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_canary_or_an_error_record_never_ranks_even_when_a_request_asks_for_it(spark):
    asks_for_all = {**POLICY, "preference": ["canary", "champion", "gbt"]}
    scores = frame(spark, SCORE_RECORD, [
        score("a", "canary", "canary", "2026-01-01T00:00:00.100Z", policy=asks_for_all),
        score("a", "logreg", "champion", "2026-01-01T00:00:00.400Z", policy=asks_for_all, error="raised ValueError: x"),
        score("a", "gbt", "challenger", "2026-01-01T00:00:00.500Z", policy=asks_for_all),
    ])
    actual = rank_scores(scores).select("model", "rank", "in_time")
    expected = spark.createDataFrame([("canary", None, True), ("logreg", None, False), ("gbt", 3, True)],
                                     "model string, rank int, in_time boolean")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_only_the_first_preference_in_time_answers_immediately(spark):
    scores = frame(spark, SCORE_RECORD, [
        score("a", "logreg", "champion", "2026-01-01T00:00:00.400Z"),
        score("a", "gbt", "challenger", "2026-01-01T00:00:00.300Z"),
        score("b", "logreg", "champion", "2026-01-01T00:00:02.000Z"),
    ])
    actual = immediate_answers(rank_scores(scores)).select("request_id", "model", "reason", "in_time")
    expected = spark.createDataFrame([("a", "logreg", "preferred", True)],
                                     "request_id string, model string, reason string, in_time boolean")
    assert_df_equality(actual, expected, ignore_nullable=True)


@pytest.fixture
def streams(spark, tmp_path):
    """File sources standing in for the two topics: each write() is one more file, each
    advance() one more micro-batch, so the test controls exactly what arrives when."""
    requests_dir, scores_dir = tmp_path / "requests", tmp_path / "scores"
    requests_dir.mkdir()
    scores_dir.mkdir()
    requests = spark.readStream.schema(FEATURE_RECORD).json(str(requests_dir))
    scores = spark.readStream.schema(SCORE_RECORD).json(str(scores_dir))
    query = (answers(requests, scores, decision_delay_ms=2000).writeStream.format("memory")
             .queryName(f"answers_{tmp_path.name}").option("checkpointLocation", str(tmp_path / "ck")).start())
    written = []

    def write(directory, records):
        path = directory / f"{len(written):04d}.json"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        written.append(path)

    class Streams:
        table = f"answers_{tmp_path.name}"

        def requests(self, *records):
            write(requests_dir, records)

        def scores(self, *records):
            write(scores_dir, records)

        def advance(self):
            query.processAllAvailable()
            # A list, not a set: a request answered twice must show up twice.
            return sorted(((r.request_id, r.model, r.reason, r.in_time, r.score)
                           for r in spark.table(self.table).collect()), key=str)

    yield Streams()
    query.stop()


def test_each_request_is_answered_once_immediately_or_after_its_deadline(streams):
    streams.requests(request("fast"), request("fallback"), request("late"), request("nobody"), request("failed"))
    streams.scores(
        score("fast", "logreg", "champion", "2026-01-01T00:00:00.500Z"),
        score("fast", "gbt", "challenger", "2026-01-01T00:00:00.200Z"),
        score("fallback", "gbt", "challenger", "2026-01-01T00:00:00.900Z"),
        score("fallback", "logreg", "champion", "2026-01-01T00:00:01.500Z"),
        score("late", "gbt", "challenger", "2026-01-01T00:00:01.800Z"),
        score("nobody", "canary", "canary", "2026-01-01T00:00:00.100Z"),
        score("failed", "logreg", "champion", "2026-01-01T00:00:00.100Z", error="not_finite: nan"),
        score("failed", "gbt", "challenger", "2026-01-01T00:00:00.700Z"),
    )
    # The preferred model came in time: answered in the batch its score arrived in.
    assert streams.advance() == [("fast", "logreg", "preferred", True, 0.9)]

    # Event time passes the deadline plus the delay (a heartbeat, as when traffic stops).
    streams.requests(heartbeat("2026-01-01T00:00:05Z"))
    streams.advance()
    assert streams.advance() == [
        ("failed", "gbt", "fallback", True, 0.9),  # the champion's error record is no answer
        ("fallback", "gbt", "fallback", True, 0.9),  # the first preference in time
        ("fast", "logreg", "preferred", True, 0.9),
        ("late", "gbt", "fallback", False, 0.9),  # nothing in time: the first preference that came
        ("nobody", None, "default", None, -1.0),  # the canary never answers: the policy's default
    ]

    # Later heartbeats answer nothing twice.
    streams.requests(heartbeat("2026-01-01T00:00:09Z"))
    assert len(streams.advance()) == 5
