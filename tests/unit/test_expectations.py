"""The Great Expectations suite generated from the feature spec, validated with GX on Spark."""

from __future__ import annotations

from pathlib import Path

from features.expectations import FeatureValidator, expectation_rows, spec_expectations
from rdv.feature_spec import load_feature_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = load_feature_spec(REPO / "conf" / "features.yaml")


def test_the_suite_is_the_spec_s_feature_checks():
    rides = load_feature_spec(REPO / "tests" / "fixtures" / "specs" / "rides.yaml")
    suite = [
        (e.expectation_type, {k: v for k, v in e.configuration.kwargs.items() if k != "column"}, e.column)
        for e in spec_expectations(rides)
    ]
    assert suite == [
        ("expect_column_to_exist", {}, "log_km"),
        ("expect_column_values_to_not_be_null", {}, "log_km"),
        ("expect_column_values_to_be_between", {"min_value": 0.0}, "log_km"),
        *[("expect_column_to_exist", {}, name) for name in ("same_zone", "rush_hour", "passengers", "large_vehicle")],
    ]
    shipped = {(e.expectation_type, e.column) for e in spec_expectations(SPEC)}
    assert ("expect_column_values_to_be_in_set", "is_night") in shipped
    assert ("expect_column_values_to_be_between", "category_risk") in shipped


def test_a_batch_that_breaks_the_suite_says_which_expectation_and_how_often(spark):
    good = {
        "log_amount": 3.0,
        "amount_ratio": 1.2,
        "distance_km": 4.0,
        "is_foreign": 0.0,
        "is_night": 1.0,
        "card_present": 1.0,
        "txn_count_24h": 2.0,
        "category_risk": 0.3,
    }
    rows = [good, {**good, "category_risk": 1.7}, {**good, "is_night": 0.5}, good]
    features = spark.createDataFrame(rows, SPEC.features_schema())
    validation = FeatureValidator(SPEC).validate(features, rows=len(rows))
    assert validation.success is False and validation.suite == "rdv-features-v1" and validation.rows == 4
    outcomes = {(r["expectation"], r["column"]): r for r in expectation_rows(validation)}
    assert len(outcomes) == len(spec_expectations(SPEC))
    failed = {key: (r["unexpected_count"], r["unexpected_percent"]) for key, r in outcomes.items() if not r["success"]}
    assert failed == {
        ("expect_column_values_to_be_between", "category_risk"): (1, 25.0),
        ("expect_column_values_to_be_in_set", "is_night"): (1, 25.0),
    }
    assert all(r["exception"] is None for r in outcomes.values())
