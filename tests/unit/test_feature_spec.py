"""The declared feature spec (conf/features.yaml): load, validation messages, expression checks."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import functions as F

from features.checks import check_rules, first_broken
from rdv.feature_spec import check_expressions, load_feature_spec
from rdv.validation import ConfigError

SPEC = Path(__file__).resolve().parents[2] / "conf" / "features.yaml"


def test_the_shipped_spec_computes_the_demo_features(spark):
    spec = load_feature_spec(SPEC)
    check_expressions(spark, spec, SPEC)
    rows = [
        ("r1", datetime(2026, 1, 1, 3), "c1", 120.0, "Travel", "FR", "DE", 800.0, False, 3, 40.0),
        ("r2", datetime(2026, 1, 1, 14), "c2", 8.5, "grocery", "DE", "DE", 1.2, True, 0, 30.0),
        ("r3", datetime(2026, 1, 1, 22), "c3", 50.0, "pets", "US", "US", 3.0, True, 9, 0.0),
    ]
    raw = spark.createDataFrame(rows, spec.raw_schema())
    actual = raw.select("request_id", *[F.expr(f.expr).cast(f.type).alias(n) for n, f in spec.features.items()])
    expected = spark.createDataFrame(
        [
            ("r1", math.log(121.0), 3.0, 800.0, 1.0, 1.0, 0.0, 3.0, 0.5),
            ("r2", math.log(9.5), 8.5 / 30.0, 1.2, 0.0, 0.0, 1.0, 0.0, 0.05),
            ("r3", math.log(51.0), 50.0, 3.0, 0.0, 0.0, 1.0, 9.0, 0.3),
        ],
        "request_id string, " + ", ".join(f"{name} double" for name in spec.features),
    )
    assert_df_equality(actual, expected, ignore_nullable=True)
    assert spec.raw["card_id"].personal == "hash"
    assert spec.versions == (1,)


def write_spec(tmp_path, edit) -> Path:
    data = yaml.safe_load(SPEC.read_text())
    edit(data)
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["raw"]["amount"].update(type="decimal"), "raw.amount.type: Input should be 'string'"),
        (lambda d: d["raw"]["amount"].update(requird=True), "raw.amount.requird: unknown field"),
        (
            lambda d: d["raw"]["amount"]["checks"].update(min=10, max=1),
            "raw.amount.checks: Value error, min (10) is above max (1)",
        ),
        (
            lambda d: d["raw"]["country"]["checks"].update(regex="[A-Z"),
            "raw.country.checks.regex: Value error, '[A-Z' is not",
        ),
        (
            lambda d: d["raw"]["card_present"].update(checks={"min": 0}),
            "raw.card_present: Value error, min and max apply to numbers",
        ),
        (
            lambda d: d["raw"]["card_id"].update(personal="mask"),
            "raw.card_id.personal: Input should be 'hash' or 'drop'",
        ),
        (lambda d: d["raw"].pop("event_time"), "raw.event_time must be declared"),
        (
            lambda d: d["features"]["is_night"]["checks"].update(allowed=[]),
            "features.is_night.checks.allowed: Tuple should have at least 1 item",
        ),
        (lambda d: d.pop("schema_version"), "schema_version: Field required"),
        (
            lambda d: d.update(accepted_versions=[1, 3]),
            "accepted_versions: each must be between 1 and schema_version (1)",
        ),
        (lambda d: d["raw"].update({"schema_version": {"type": "int"}}), "raw.schema_version is reserved"),
        (lambda d: d["raw"].update({"_rdv_json": {"type": "string"}}), "'_rdv_json': a name is a letter then"),
        (lambda d: d["features"].update({"two words": {"expr": "1"}}), "'two words': a name is a letter then"),
        (
            lambda d: d["limits"].update(max_lateness="a while"),
            "limits.max_lateness: Value error, 'a while' is not a duration",
        ),
        (lambda d: d.update(subject="card"), "subject: 'card' must be a raw field of type string"),
        (
            lambda d: d["raw"]["card_id"].update(personal="drop"),
            "subject: 'card_id' must be a raw field of type string that is not `personal: drop`",
        ),
    ],
)
def test_a_bad_spec_fails_at_load_naming_the_file_and_the_field(tmp_path, edit, message):
    path = write_spec(tmp_path, edit)
    with pytest.raises(ConfigError) as error:
        load_feature_spec(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_an_expression_over_an_undeclared_field_fails_at_job_start_naming_the_feature(spark, tmp_path):
    path = write_spec(tmp_path, lambda d: d["features"]["log_amount"].update(expr="ln(1 + amont)"))
    spec = load_feature_spec(path)
    with pytest.raises(ConfigError, match=r"features\.log_amount\.expr: .*amont"):
        check_expressions(spark, spec, path)


def test_each_declared_check_quarantines_with_its_own_reason(spark):
    spec = load_feature_spec(SPEC)
    good = ("r", datetime(2026, 1, 1, 3), "c", 120.0, "travel", "FR", "DE", 800.0, False, 3, 40.0)
    cases = [
        (good, None),
        (good[:3] + (-5.0,) + good[4:], "below_min:amount"),
        (good[:3] + (2e6,) + good[4:], "above_max:amount"),
        (good[:3] + (float("nan"),) + good[4:], "not_finite:amount"),
        (good[:7] + (float("inf"),) + good[8:], "not_finite:distance_km"),
        (good[:5] + ("france",) + good[6:], "no_match:country"),
        (good[:3] + (-5.0, "travel", "fr") + good[6:], "below_min:amount"),  # the first check broken
        (good[:9] + (-1,) + good[10:], "below_min:txn_count_24h"),
    ]
    raw = spark.createDataFrame([row for row, _ in cases], spec.raw_schema())
    features = F.struct(*[F.expr(f.expr).cast(f.type).alias(n) for n, f in spec.features.items()])
    checked = raw.select(F.struct(*raw.columns).alias("typed"), features.alias("features")).select(
        F.col("typed.amount").alias("amount"), first_broken(check_rules(spec)).alias("reason")
    )
    expected = spark.createDataFrame([(row[3], reason) for row, reason in cases], "amount double, reason string")
    assert_df_equality(checked, expected, ignore_nullable=True, allow_nan_equality=True)
