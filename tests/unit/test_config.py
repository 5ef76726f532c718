"""Loading the config: the shipped conf is valid, and every mistake names its file and field."""

from __future__ import annotations

import shutil

import pytest

from rdv.config import ConfigError, Timing, load_config
from tests.helpers import REPO


@pytest.fixture
def conf(tmp_path):
    target = tmp_path / "conf"
    shutil.copytree(REPO / "conf", target)
    return target


def test_the_shipped_conf_loads_with_its_models_and_roles():
    config = load_config(REPO / "conf")
    assert {name: m.role for name, m in config.models.items()} == {
        "champion": "champion",
        "challenger": "challenger",
        "canary": "canary",
    }
    assert config.kafka.topics.raw.name == "rdv.raw"
    assert (config.policy.strategy, config.policy.preference) == ("preferred", ("champion", "challenger"))
    assert (config.rendezvous.grace_ms, config.rendezvous.transit_ms) == (1000, 3000)
    assert config.table("results") == str(REPO / "var" / "delta" / "results")


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            ("pipeline.yaml", "partitions: 1", "partitions: one"),
            "pipeline.yaml: kafka.topics.raw.partitions: Input should be a valid integer",
        ),
        (
            ("pipeline.yaml", "trigger: 1500 milliseconds", "trigger: soon"),
            "pipeline.yaml: spark.trigger: Value error, 'soon' is not a duration",
        ),
        (
            ("policy.yaml", "deadline_ms: 10000", "deadline_ms: 99000"),
            "policy.yaml: deadline_ms: 99000 exceeds rendezvous.max_deadline_ms (15000) of pipeline.yaml",
        ),
        (
            ("policy.yaml", "strategy: preferred", "strategy: fastest"),
            "policy.yaml: strategy: Input should be 'preferred'",
        ),
        (
            ("policy.yaml", "amount: {lt: 100}", "amount: {lt: cheap}"),
            "policy.yaml: rules.0.when: Value error, amount.lt: 'cheap' does not fit the field's type double",
        ),
        (
            ("policy.yaml", "amount: {lt: 100}", "amuont: {lt: 100}"),
            "policy.yaml: rules.0.when: Value error, unknown field 'amuont'",
        ),
        (("policy.yaml", "amount: {lt: 100}", "amount: {below: 100}"), "unknown operator 'below'; use one of eq, ne"),
        (
            ("policy.yaml", "{champion: 90, challenger: 10}", "{champion: 90, challenger: 20}"),
            "policy.yaml: split.shares: Value error, the shares add up to 110, not 100",
        ),
        (("policy.yaml", "criterion: confidence", "criterion: vibes"), "policy.yaml: best.criterion: Input should be"),
        (
            ("pipeline.yaml", "rendezvous:", "policy: {deadline_ms: 5}\nrendezvous:"),
            "pipeline.yaml: policy: the policy has its own file now",
        ),
        (("pipeline.yaml", "profile: local", "profile: local\nprofil: typo"), "pipeline.yaml: profil: unknown field"),
        (
            ("models/challenger.yaml", "output: probability", "output: probabilty"),
            "models/challenger.yaml: output: Input should be 'probability'",
        ),
        (("models/challenger.yaml", "uri:", "ur:"), "models/challenger.yaml: uri: Field required"),
        (
            ("models/canary.yaml", "output: probability", "output: probability\nspark: {memory: lots}"),
            "models/canary.yaml: spark.memory: String should match pattern",
        ),
        (
            ("policy.yaml", "preference: [champion, challenger]  #", "preference: [champion, canary]  #"),
            "policy.yaml: preference: Value error, a canary or the decoy is never served",
        ),
        (
            ("pipeline.yaml", "heartbeat_interval:", "schema_version: 1\n  heartbeat_interval:"),
            "pipeline.yaml: features.schema_version: the schema version is declared in",
        ),
        (
            ("features.yaml", "card_id:           {type: string", "card_id:           {type: strng"),
            "features.yaml: raw.card_id.type: Input should be",
        ),
        (
            ("pipeline.yaml", "# metrics: [accuracy", "metrics: [mae, accuracy"),
            "pipeline.yaml: compare: Value error, metrics: 'mae' is not a classification metric",
        ),
        (
            ("pipeline.yaml", "metric: roc_auc  ", "metric: rmse  "),
            "pipeline.yaml: compare: Value error, recommend.metric: 'rmse' is not among the metrics computed",
        ),
        (
            ("pipeline.yaml", "window: 10 seconds", "window: a while"),
            "pipeline.yaml: compare.window: Value error, 'a while'",
        ),
        (
            ("pipeline.yaml", "reference: first", "reference: last week"),
            "pipeline.yaml: compare.drift.reference: Value error, 'last week' is neither 'first' nor an interval",
        ),
        (
            ("pipeline.yaml", "confidence: 0.95", "confidence: 95"),
            "pipeline.yaml: compare.recommend.confidence: Input should be less than 1",
        ),
    ],
)
def test_a_bad_config_fails_at_load_naming_the_file_and_field(conf, edit, message):
    name, old, new = edit
    path = conf / name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_config(conf)
    assert message in str(error.value)


def test_the_rendezvous_waits_at_least_the_lateness_the_features_job_accepts(conf):
    """Its longest wait is the longest deadline and the grace, or the lateness where that is longer
    (a request may then arrive behind a watermark the longest deadline would leave it before)."""
    shipped = load_config(conf).timing
    assert shipped == Timing(max_deadline_ms=15000, grace_ms=1000, transit_ms=3000, lateness_ms=5000)
    assert (shipped.longest_wait_ms, shipped.watermark_ms) == (16000, 19000)
    spec = conf / "features.yaml"
    spec.write_text(spec.read_text().replace("max_lateness: 5 seconds", "max_lateness: 1 minute", 1))
    longer = load_config(conf).timing
    assert (longer.lateness_ms, longer.longest_wait_ms, longer.watermark_ms) == (60000, 60000, 63000)


def test_no_model_may_be_called_served_the_name_of_the_answers_in_the_comparison(conf):
    (conf / "models" / "served.yaml").write_text("uri: models:/fraud/1\n")
    with pytest.raises(ConfigError, match=r"models/served.yaml: name: Value error, 'served' is reserved"):
        load_config(conf)


def test_a_conf_without_a_feature_spec_is_refused_naming_the_file(conf):
    (conf / "features.yaml").unlink()
    with pytest.raises(ConfigError, match=r"conf/features.yaml: no such feature spec"):
        load_config(conf)


def test_an_unknown_model_is_named_with_the_configured_ones():
    with pytest.raises(
        ConfigError, match=r"models/nope.yaml: no such model config \(configured: canary, challenger, champion\)"
    ):
        load_config(REPO / "conf").model("nope")


def test_a_rule_may_test_a_feature_of_the_spec(conf):
    path = conf / "policy.yaml"
    path.write_text(path.read_text().replace("amount: {lt: 100}", "log_amount: {lt: 4.6}", 1))
    assert load_config(conf).policy.rules[0].when["log_amount"] == {"lt": 4.6}
