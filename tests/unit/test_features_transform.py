"""The features transform on static DataFrames: exact records out, every bad record with its reason."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import datetime, timedelta

import yaml
from chispa import assert_df_equality
from pyspark.sql import functions as F

from features.records import parse_feature_records
from features.transform import check_raw, route, with_policy
from rdv.feature_spec import load_feature_spec
from rdv.policy import Policy
from tests.helpers import REPO

SPEC = load_feature_spec(REPO / "conf" / "features.yaml")
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
# When the records of raw_frame arrived on rdv.raw: a second after GOOD happened.
ARRIVED = datetime(2026, 3, 1, 2, 30, 1)


def raw_frame(spark, values, topic="rdv.raw", arrived=ARRIVED):
    return spark.createDataFrame(
        [(v, topic, 0, i, arrived) for i, v in enumerate(values)],
        "value string, topic string, partition int, offset long, timestamp timestamp",
    )


KEY = b"a test key, not a secret"


def featurize(raw, policy=POLICY, spec=SPEC):
    """The features job's batch without deduplication (see test_feature_dedup.py)."""
    return with_policy(check_raw(raw, spec, KEY), policy, spec, 10_000)


def without(field):
    return json.dumps({k: v for k, v in GOOD.items() if k != field})


def test_a_good_event_becomes_exact_canonical_features(spark):
    row = (
        featurize(raw_frame(spark, [json.dumps(GOOD)]))
        .select("request_id", "event_time", "features.*", "reason")
        .first()
    )
    assert row.request_id == "r-1"
    assert row.event_time == datetime(2026, 3, 1, 2, 30, 0, 250000)
    assert row.reason is None
    assert math.isclose(row.log_amount, math.log(100.0))
    assert row.amount_ratio == 99.0 / 50.0
    assert row.distance_km == 812.5
    assert (row.is_foreign, row.is_night, row.card_present, row.txn_count_24h) == (1.0, 1.0, 0.0, 4.0)
    assert row.category_risk == 0.7


def test_bad_records_are_kept_with_the_first_rule_they_break(spark):
    late = (ARRIVED - timedelta(seconds=6)).isoformat() + "Z"
    early = (ARRIVED + timedelta(minutes=6)).isoformat() + "Z"
    values = [
        "not json at all",
        "[1, 2]",
        json.dumps({**GOOD, "card_id": "x" * 70_000}),
        json.dumps({**GOOD, "schema_version": 2}),
        json.dumps({**GOOD, "schema_version": "one"}),
        without("amount"),
        json.dumps({**GOOD, "amount": "lots"}),
        json.dumps({**GOOD, "event_time": "yesterday"}),
        json.dumps({**GOOD, "amount": -1.0}),
        json.dumps({**GOOD, "amount": float("nan")}),
        json.dumps({**GOOD, "distance_km": float("inf")}),
        json.dumps({**GOOD, "country": "France"}),
        json.dumps({**GOOD, "event_time": early}),
        json.dumps({**GOOD, "event_time": late}),
        json.dumps({**GOOD, "amount": -1.0, "event_time": late}),  # the first rule broken names it
        json.dumps({**GOOD, "policy": {"deadline_ms": -5}}),
        json.dumps({**GOOD, "policy": "fast please"}),
        json.dumps({**GOOD, "schema_version": 1}),
        json.dumps(GOOD),
    ]
    actual = featurize(raw_frame(spark, values)).select("offset", "reason", "value")
    reasons = [
        "not_json",
        "not_object",
        "too_large",
        "unknown_version:schema_version",
        "unknown_version:schema_version",
        "missing:amount",
        "wrong_type:amount",
        "wrong_type:event_time",
        "below_min:amount",
        "not_finite:amount",
        "not_finite:distance_km",
        "no_match:country",
        "too_new:event_time",
        "too_old:event_time",
        "below_min:amount",
        "bad_policy:deadline_ms",
        "bad_policy",
        None,
        None,
    ]
    expected = spark.createDataFrame(
        [(i, r, v) for i, (r, v) in enumerate(zip(reasons, values))], "offset long, reason string, value string"
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_policy_comes_from_the_event_or_the_default_and_is_clipped(spark):
    values = [
        json.dumps(GOOD),
        json.dumps({**GOOD, "request_id": "r-2", "policy": {"deadline_ms": 60_000, "preference": ["gbt"]}}),
    ]
    actual = featurize(raw_frame(spark, values)).select(
        "request_id", "policy.deadline_ms", "policy.preference", "policy.default_score"
    )
    expected = spark.createDataFrame(
        [("r-1", 3000, ["champion", "challenger"], 0.0), ("r-2", 10_000, ["gbt"], 0.0)],
        "request_id string, deadline_ms int, preference array<string>, default_score double",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_an_event_without_an_id_gets_one_from_its_place_in_the_topic(spark):
    parsed = featurize(raw_frame(spark, [json.dumps(GOOD), without("request_id")]))
    assert sorted((r.request_id, r.own_id) for r in parsed.collect()) == [("r-1", True), ("rq-0-1", False)]


def test_route_sends_good_events_to_features_and_bad_ones_to_quarantine(spark):
    messages = route(
        featurize(raw_frame(spark, [json.dumps(GOOD), "{oops"])), "rdv.features", "rdv.quarantine", schema_version=1
    )
    by_topic = {r.topic: r for r in messages.collect()}
    assert set(by_topic) == {"rdv.features", "rdv.quarantine"}
    quarantined = json.loads(by_topic["rdv.quarantine"].value)
    assert (quarantined["reason"], quarantined["raw"], quarantined["source_offset"]) == ("not_json", "{oops", 1)
    record = parse_feature_records(messages.where(F.col("topic") == "rdv.features"), SPEC.features_schema())
    row = record.first()
    assert (row.schema_version, row.kind, row.request_id, row.features.amount_ratio) == (1, "request", "r-1", 1.98)


def test_every_message_is_keyed_by_its_request_id_good_or_quarantined(spark):
    messages = route(
        featurize(raw_frame(spark, [json.dumps(GOOD), without("amount")])), "rdv.features", "rdv.quarantine", 1
    )
    assert sorted((r.topic, r.key) for r in messages.collect()) == [("rdv.features", "r-1"), ("rdv.quarantine", "r-1")]


def test_personal_fields_reach_the_features_only_as_a_keyed_hash_or_not_at_all(spark, tmp_path):
    data = yaml.safe_load((REPO / "conf" / "features.yaml").read_text())
    data["raw"]["home_country"]["personal"] = "drop"
    data["features"]["card"] = {"expr": "card_id", "type": "string"}
    data["features"]["home"] = {"expr": "coalesce(home_country, 'dropped')", "type": "string"}
    (tmp_path / "features.yaml").write_text(yaml.safe_dump(data))
    spec = load_feature_spec(tmp_path / "features.yaml")
    row = featurize(raw_frame(spark, [json.dumps(GOOD)]), spec=spec).first()
    assert row.reason is None  # the checks saw the real home_country
    assert row.features.card == hmac.new(KEY, b"card-1", hashlib.sha256).hexdigest()
    assert (row.typed.card_id, row.features.home, row.typed.home_country) == (row.features.card, "dropped", None)
    assert row.features.is_foreign is None  # a feature of a dropped field sees null
