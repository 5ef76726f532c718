"""The features transform on static DataFrames: exact records out, every bad record with its reason."""
from __future__ import annotations

import json
import math
from datetime import datetime

from chispa import assert_df_equality
from pyspark.sql import functions as F

from features.transform import parse_feature_records, parse_raw, route
from rdv.policy import Policy

POLICY = Policy(deadline_ms=3000, preference=("champion", "challenger"), default_score=0.0)
GOOD = {
    "request_id": "r-1",
    "event_time": "2026-03-01T02:30:00.250Z",
    "card_id": "card-1",
    "amount": 99.0,
    "merchant_category": "Online",
    "country": "FR",
    "home_country": "DE",
    "distance_km": 812.5,
    "card_present": False,
    "txn_count_24h": 4,
    "avg_amount_30d": 50.0,
}


def raw_frame(spark, values):
    return spark.createDataFrame(
        [(v, "rdv.raw", 0, i) for i, v in enumerate(values)], "value string, topic string, partition int, offset long"
    )


def without(field):
    return json.dumps({k: v for k, v in GOOD.items() if k != field})


def test_a_good_event_becomes_exact_canonical_features(spark):
    parsed = parse_raw(raw_frame(spark, [json.dumps(GOOD)]), POLICY, 10_000)
    row = parsed.select("request_id", "event_time", "features.*", "reason").first()
    assert row.request_id == "r-1"
    assert row.event_time == datetime(2026, 3, 1, 2, 30, 0, 250000)
    assert row.reason is None
    assert math.isclose(row.log_amount, math.log(100.0))
    assert row.amount_ratio == 99.0 / 50.0
    assert row.distance_km == 812.5
    assert (row.is_foreign, row.is_night, row.card_present, row.txn_count_24h) == (1.0, 1.0, 0.0, 4.0)
    assert row.category_risk == 0.7


def test_bad_records_are_kept_with_the_first_rule_they_break(spark):
    values = [
        "not json at all",
        "[1, 2]",
        without("amount"),
        json.dumps({**GOOD, "amount": "lots"}),
        json.dumps({**GOOD, "event_time": "yesterday"}),
        json.dumps({**GOOD, "policy": {"deadline_ms": -5}}),
        json.dumps({**GOOD, "policy": "fast please"}),
        json.dumps(GOOD),
    ]
    actual = parse_raw(raw_frame(spark, values), POLICY, 10_000).select("offset", "reason", "value")
    reasons = ["not_json", "not_object", "missing:amount", "wrong_type:amount", "wrong_type:event_time",
               "bad_policy:deadline_ms", "bad_policy", None]
    expected = spark.createDataFrame(
        [(i, r, v) for i, (r, v) in enumerate(zip(reasons, values))], "offset long, reason string, value string"
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_policy_comes_from_the_event_or_the_default_and_is_clipped(spark):
    values = [
        json.dumps(GOOD),
        json.dumps({**GOOD, "request_id": "r-2", "policy": {"deadline_ms": 60_000, "preference": ["gbt"]}}),
    ]
    actual = parse_raw(raw_frame(spark, values), POLICY, 10_000).select(
        "request_id", "policy.deadline_ms", "policy.preference", "policy.default_score"
    )
    expected = spark.createDataFrame(
        [("r-1", 3000, ["champion", "challenger"], 0.0), ("r-2", 10_000, ["gbt"], 0.0)],
        "request_id string, deadline_ms int, preference array<string>, default_score double",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_an_event_without_an_id_gets_one_from_its_place_in_the_topic(spark):
    parsed = parse_raw(raw_frame(spark, [json.dumps(GOOD), without("request_id")]), POLICY, 10_000)
    assert sorted(r.request_id for r in parsed.collect()) == ["r-1", "rq-0-1"]


def test_route_sends_good_events_to_features_and_bad_ones_to_quarantine(spark):
    parsed = parse_raw(raw_frame(spark, [json.dumps(GOOD), "{oops"]), POLICY, 10_000)
    messages = route(parsed, "rdv.features", "rdv.quarantine", schema_version=1, heartbeats_topic="rdv.heartbeats")
    by_topic = {r.topic: r for r in messages.collect()}
    assert set(by_topic) == {"rdv.features", "rdv.quarantine"}
    quarantined = json.loads(by_topic["rdv.quarantine"].value)
    assert (quarantined["reason"], quarantined["raw"], quarantined["source_offset"]) == ("not_json", "{oops", 1)
    record = parse_feature_records(messages.where(F.col("topic") == "rdv.features"))
    row = record.first()
    assert (row.schema_version, row.kind, row.request_id, row.features.amount_ratio) == (1, "request", "r-1", 1.98)


def test_a_heartbeat_read_with_the_raw_events_becomes_a_heartbeat_record_on_features(spark):
    beat = spark.createDataFrame([('{"event_time": "2026-03-01T02:30:01.000Z"}', "rdv.heartbeats", 0, 7)],
                                 "value string, topic string, partition int, offset long")
    messages = route(parse_raw(beat, POLICY, 10_000), "rdv.features", "rdv.quarantine", 1, "rdv.heartbeats")
    row = messages.first()
    assert (row.topic, row.key) == ("rdv.features", None)
    record = parse_feature_records(messages).first()
    assert (record.kind, record.request_id, record.event_time) == ("heartbeat", None, datetime(2026, 3, 1, 2, 30, 1))
