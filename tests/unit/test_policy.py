"""The policy: rules and the split compiled to Spark SQL, event overrides, and the file re-read
while the features job runs."""

from __future__ import annotations

import json
import os

import pytest
from chispa import assert_df_equality

from rdv.policy import Policy, PolicyFile, Rule, Split
from tests.unit.test_features_transform import GOOD, SPEC, featurize, raw_frame


def rule(**fields) -> Rule:
    """A rule validated against the shipped spec's fields, as load_policy validates it."""
    return Rule.model_validate(fields, context={"fields": SPEC.field_types()})


RULES = (
    rule(
        name="small-grocery",
        when={"merchant_category": {"eq": "grocery"}, "amount": {"lt": 100}},
        preference=("challenger", "champion"),
    ),
    rule(
        name="abroad", when={"is_foreign": {"eq": 1.0}, "merchant_category": {"not_in": ["fuel"]}}, preference=("gbt",)
    ),
)
POLICY = Policy(deadline_ms=3000, rules=RULES, split=Split(shares={"champion": 90, "challenger": 10}, salt="s1"))


def events(spark, *overrides):
    return raw_frame(spark, [json.dumps({**GOOD, **o}) for o in overrides])


def test_rules_pick_the_preference_of_the_first_rule_that_holds(spark):
    rules = Policy(strategy="rules", deadline_ms=3000, rules=RULES)
    raw = events(
        spark,
        {"request_id": "grocery", "merchant_category": "grocery", "amount": 20.0, "country": "DE"},
        {"request_id": "grocery-abroad", "merchant_category": "grocery", "amount": 20.0},  # both hold: the first wins
        {"request_id": "abroad", "merchant_category": "travel"},
        {"request_id": "fuel-abroad", "merchant_category": "fuel"},
        {"request_id": "big-grocery", "merchant_category": "grocery", "amount": 500.0, "country": "DE"},
        {"request_id": "own", "merchant_category": "grocery", "amount": 20.0, "policy": {"preference": ["x"]}},
    )
    actual = featurize(raw, rules).select("request_id", "policy.strategy", "policy.rule", "policy.preference")
    expected = spark.createDataFrame(
        [
            ("grocery", "rules", "small-grocery", ["challenger", "champion"]),
            ("grocery-abroad", "rules", "small-grocery", ["challenger", "champion"]),
            ("abroad", "rules", "abroad", ["gbt"]),
            ("fuel-abroad", "rules", None, ["champion", "challenger"]),  # none holds: the configured preference
            ("big-grocery", "rules", None, ["champion", "challenger"]),
            ("own", "rules", None, ["x"]),
        ],  # an event's own preference is final
        "request_id string, strategy string, rule string, preference array<string>",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_split_exposes_each_request_to_one_arm_by_a_stable_hash_of_its_id(spark):
    split = POLICY.model_copy(update={"strategy": "split"})
    ids = [f"req-{i}" for i in range(4000)]
    raw = events(spark, *[{"request_id": i} for i in ids])
    arms = {
        r.request_id: (r.arm, tuple(r.preference))
        for r in featurize(raw, split).select("request_id", "policy.arm", "policy.preference").collect()
    }
    assert set(arms.values()) == {("champion", ("champion", "challenger")), ("challenger", ("challenger", "champion"))}
    exposed = sum(arm == "challenger" for arm, _ in arms.values()) / len(ids)
    assert 0.085 < exposed < 0.115  # 10 % of requests, within sampling error
    # Pinned: the arm of an id never changes (a new hash would silently move live traffic between arms).
    assert [i for i in ids[:100] if arms[i][0] == "challenger"] == [
        "req-22",
        "req-40",
        "req-49",
        "req-55",
        "req-62",
        "req-71",
        "req-72",
        "req-73",
        "req-83",
    ]


def test_an_event_may_override_its_policy_and_a_bad_override_is_quarantined_naming_the_field(spark):
    raw = events(
        spark,
        {"request_id": "best", "policy": {"strategy": "best", "deadline_ms": 60_000}},
        {"request_id": "scored", "policy": {"strategy": "best", "criterion": "highest_score", "default_score": 0.5}},
        {"request_id": "first", "policy": {"strategy": "first", "preference": ["gbt", "champion"]}},
        {"request_id": "s1", "policy": {"strategy": "nearest"}},
        {"request_id": "s2", "policy": {"deadline_ms": "soon"}},
        {"request_id": "s3", "policy": {"preference": "champion"}},
        {"request_id": "s4", "policy": {"preference": []}},
        {"request_id": "s5", "policy": {"default_score": "none"}},
        {"request_id": "s6", "policy": {"criterion": "vibes"}},
        {"request_id": "s7", "policy": {"deadline": 500}},
    )
    actual = (
        featurize(raw, POLICY)
        .select(
            "request_id",
            "reason",
            "policy.strategy",
            "policy.deadline_ms",
            "policy.preference",
            "policy.default_score",
            "policy.criterion",
        )
        .where("reason IS NULL")
    )
    expected = spark.createDataFrame(
        [
            ("best", None, "best", 10_000, ["champion", "challenger"], 0.0, "confidence"),  # clipped to the maximum
            ("scored", None, "best", 3000, ["champion", "challenger"], 0.5, "highest_score"),
            ("first", None, "first", 3000, ["gbt", "champion"], 0.0, None),
        ],
        "request_id string, reason string, strategy string, deadline_ms int, preference array<string>, "
        "default_score double, criterion string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    reasons = {r.request_id: r.reason for r in featurize(raw, POLICY).where("reason IS NOT NULL").collect()}
    assert reasons == {
        "s1": "bad_policy:strategy",
        "s2": "bad_policy:deadline_ms",
        "s3": "bad_policy:preference",
        "s4": "bad_policy:preference",
        "s5": "bad_policy:default_score",
        "s6": "bad_policy:criterion",
        "s7": "bad_policy:deadline",
    }


def test_a_strategy_whose_settings_are_not_configured_is_refused_per_event(spark):
    plain = Policy(deadline_ms=3000)
    reasons = [r.reason for r in featurize(events(spark, {"policy": {"strategy": "split"}}), plain).collect()]
    assert reasons == ["bad_policy:strategy"]


def test_the_policy_file_is_re_read_when_it_changes_and_a_bad_edit_keeps_the_last_good_policy(tmp_path, caplog):
    path = tmp_path / "policy.yaml"
    path.write_text("deadline_ms: 2000\n")
    policy = PolicyFile(path, 10_000, SPEC.field_types(), Policy(deadline_ms=2000))
    assert policy.refresh().deadline_ms == 2000

    path.write_text("strategy: first\ndeadline_ms: 2500\n")
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse clock
    assert (policy.refresh().strategy, policy.current.deadline_ms) == ("first", 2500)

    path.write_text("strategy: first\ndeadline_ms: 20000\n")
    os.utime(path, ns=(2, 2))
    assert policy.refresh().deadline_ms == 2500
    assert "deadline_ms: 20000 exceeds rendezvous.max_deadline_ms" in caplog.text


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"name": "r", "when": {"card_present": {"lt": True}}, "preference": ["champion"]},
            "order comparisons need a number",
        ),
        (
            {"name": "r", "when": {"country": {"in": "FR"}}, "preference": ["champion"]},
            "country.in: expects a non-empty list",
        ),
        (
            {"name": "r", "when": {"country": {"eq": "FR"}}, "preference": ["canary"]},
            "a canary or the decoy is never served",
        ),
    ],
)
def test_a_rule_that_cannot_be_compiled_fails_at_load(bad, message):
    with pytest.raises(ValueError, match=message):
        rule(**bad)
