"""The jobs against the real broker, real Delta tables and a real MLflow registry, in one session."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import yaml
from delta.tables import DeltaTable
from mlflow import MlflowClient
from pyspark.sql import functions as F

from jobs import decide, decoy, featurize, record, score
from rdv.config import ConfigError, load_config
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import ensure_topics, pipeline_topics
from rdv.operations.model_configs import add_model_config
from rdv.operations.quarantine_replay import replay_quarantine
from tests.helpers import make_config
from tests.integration.corpus import corpus
from tests.integration.helpers import delta_count, fresh_events, stop_all, wait_for
from tests.integration.kafka_io import consume, produce


def test_the_features_job_accounts_for_every_raw_record_and_replays_a_fixed_one(spark, config):
    """raw = features + quarantine, per reason, exactly, on Kafka and in the Delta table; a record
    fixed in the quarantine table and replayed becomes a feature record."""
    messages, expected = corpus(good_count=40)
    produce(config.kafka.bootstrap_servers, config.kafka.topics.raw.name, messages)
    queries = [*featurize.build_all(spark, config), record.build(spark, config)]  # the recorder keeps the quarantine
    bootstrap, topics = config.kafka.bootstrap_servers, config.kafka.topics

    def outcomes() -> Counter:
        requests = [r for r in consume(bootstrap, topics.features.name, idle_ms=1000) if r["kind"] == "request"]
        return Counter({None: len(requests)}) + Counter(
            q["reason"] for q in consume(bootstrap, topics.quarantine.name, idle_ms=1000)
        )

    try:
        # The queries run on their own triggers, as in production: wait for the outputs.
        wait_for(
            outcomes,
            lambda counts: counts.total() >= len(messages),
            "every raw record as a feature or quarantine record",
        )
        wait_for(
            lambda: delta_count(spark, config.table("quarantine")),
            lambda n: n >= len(messages) - expected[None],
            "every bad record in the quarantine table",
        )
        assert outcomes() == expected
        table = spark.read.format("delta").load(config.table("quarantine"))
        assert Counter({r.reason: r["count"] for r in table.groupBy("reason").count().collect()}) == expected - Counter(
            {None: expected[None]}
        )
        # Each raw payload is kept untouched, with where it came from.
        rows = table.collect()
        assert {r.raw for r in rows} <= set(messages)
        assert {(r.source_topic, r.quarantined_at is not None) for r in rows} == {(topics.raw.name, True)}
        # The rendezvous's clock goes to rdv.heartbeats, for it alone: rdv.features holds requests only.
        records = consume(bootstrap, topics.features.name, idle_ms=1000)
        assert {r["kind"] for r in records} == {"request"}
        assert {r["policy"]["deadline_ms"] for r in records} == {config.policy.deadline_ms}
        beats = wait_for(
            lambda: consume(bootstrap, topics.heartbeats.name, idle_ms=1000),
            lambda found: len(found) > 0,
            "a heartbeat on rdv.heartbeats",
        )
        assert {tuple(sorted(b)) for b in beats} == {("event_time", "kind", "schema_version")}

        # `rdv quarantine replay`: the negative amount fixed where it lies comes back as a feature
        # record, though its event time is minutes old now: it keeps the time it first arrived.
        DeltaTable.forPath(spark, config.table("quarantine")).update(
            "reason = 'below_min:amount'", {"raw": F.regexp_replace("raw", '"amount": -12.5', '"amount": 12.5')}
        )
        not_replayed = ("duplicate:request_id", "too_old:event_time", "too_new:event_time")
        assert replay_quarantine(spark, config, dry_run=True) == {
            reason: n for reason, n in expected.items() if reason is not None and reason not in not_replayed
        }
        assert replay_quarantine(spark, config, ["below_min"]) == {"below_min:amount": 1}
        assert replay_quarantine(spark, config, ["below_min"]) == {}  # never twice

        def replayed() -> list[dict]:
            return [
                r
                for r in consume(bootstrap, topics.features.name, idle_ms=1000)
                if r.get("request_id") == "bad-negative"
            ]

        fixed = wait_for(replayed, lambda found: len(found) > 0, "the replayed record on rdv.features")
        assert len(fixed) == 1 and fixed[0]["features"]["log_amount"] == pytest.approx(math.log(13.5))
    finally:
        stop_all(queries)


def test_a_model_job_fails_at_start_on_an_unknown_feature(spark, tmp_path, registry, broker):
    config = make_config(tmp_path, mlflow={"tracking_uri": registry})
    (config.conf_dir / "models" / "typo.yaml").write_text(
        "uri: models:/fraud@champion\nfeatures: [log_amount, amout]\n"
    )
    with pytest.raises(ConfigError, match=r"models/typo.yaml: features: amout not in the feature spec .*features.yaml"):
        score.build(spark, load_config(config.conf_dir), "typo")


def test_a_model_job_fails_at_start_on_a_model_the_registry_lacks(spark, tmp_path, registry, broker):
    config = make_config(tmp_path, mlflow={"tracking_uri": registry})
    (config.conf_dir / "models" / "ghost.yaml").write_text("uri: models:/fraud@nobody\n")
    with pytest.raises(ConfigError, match=r"models/ghost.yaml: uri: models:/fraud@nobody: .*nobody"):
        score.build(spark, load_config(config.conf_dir), "ghost")


def test_model_add_refuses_a_model_the_registry_lacks_and_writes_nothing(tmp_path, registry):
    config = make_config(tmp_path, mlflow={"tracking_uri": registry})
    with pytest.raises(ConfigError, match=r"models/ghost.yaml: uri: models:/fraud/999: .*"):
        add_model_config(config, "ghost", "models:/fraud/999")
    assert not (config.conf_dir / "models" / "ghost.yaml").exists()


def test_a_model_job_fails_at_start_when_its_features_lack_a_model_input(spark, tmp_path, registry, broker):
    config = make_config(tmp_path, mlflow={"tracking_uri": registry})
    (config.conf_dir / "models" / "narrow.yaml").write_text("uri: models:/fraud@challenger\nfeatures: [log_amount]\n")
    with pytest.raises(ConfigError, match=r"models/narrow.yaml: features: model version \d+ also needs amount_ratio"):
        score.build(spark, load_config(config.conf_dir), "narrow")


@pytest.fixture
def fast_config(tmp_path, broker, registry):
    """Short deadlines, so deferred answers come within seconds of the heartbeats."""
    config = make_config(
        tmp_path,
        mlflow={"tracking_uri": registry},
        policy={"deadline_ms": 3000},
        rendezvous={"max_deadline_ms": 3000, "grace": "1 second"},
    )
    ensure_topics(client_settings(config), pipeline_topics(config))
    return config


def test_the_pipeline_in_one_application_answers_each_request_once_and_keeps_every_score(spark, fast_config):
    config = fast_config
    queries = [
        featurize.build(spark, config),
        score.build(spark, config, "champion"),
        score.build(spark, config, "challenger"),
        decoy.build(spark, config),
        *decide.build(spark, config),
        record.build(spark, config),
    ]
    try:
        # Stamped now, once every query has started: an event older than limits.max_lateness on
        # arrival would be quarantined as too old.
        events = fresh_events(30, seed=2)
        ids = sorted(json.loads(e)["request_id"] for e in events)
        produce(config.kafka.bootstrap_servers, config.kafka.topics.raw.name, events)
        # The queries run on their own triggers, as in production.
        results = wait_for(
            lambda: consume(config.kafka.bootstrap_servers, config.kafka.topics.results.name, idle_ms=1000),
            lambda r: len(r) >= len(ids),
            "an answer per request",
        )
        wait_for(
            lambda: delta_count(spark, config.table("archive")), lambda n: n >= len(ids), "every request in the archive"
        )
        for query in queries:  # the recorder catches up with rdv.results and rdv.scores
            if query.name == record.QUERY:
                query.processAllAvailable()
    finally:
        stop_all(queries)

    assert sorted(r["request_id"] for r in results) == ids
    assert {r["reason"] for r in results} <= {"preferred", "fallback", "default"}
    for r in results:
        if r["reason"] == "preferred":
            assert r["role"] == "champion" and r["in_time"] is True

    versions = {
        a: str(v.version)
        for a, v in (
            (
                "champion",
                MlflowClient(registry_uri=config.tracking_uri).get_model_version_by_alias("fraud", "champion"),
            ),
            (
                "challenger",
                MlflowClient(registry_uri=config.tracking_uri).get_model_version_by_alias("fraud", "challenger"),
            ),
        )
    }
    scores = spark.read.format("delta").load(config.table("scores"))
    per_model = {
        (r.model, r.model_version, r.role): (r.n, r.d)
        for r in scores.groupBy("model", "model_version", "role")
        .agg(F.count("*").alias("n"), F.countDistinct("request_id").alias("d"))
        .collect()
    }
    assert per_model == {
        ("champion", versions["champion"], "champion"): (30, 30),
        ("challenger", versions["challenger"], "challenger"): (30, 30),
    }
    assert scores.where(F.col("error").isNotNull() | (F.col("registered_model") != "fraud")).count() == 0

    stored = spark.read.format("delta").load(config.table("results"))
    assert sorted(r.request_id for r in stored.select("request_id").collect()) == ids
    assert stored.where("latency_ms IS NULL OR latency_ms < 0").count() == 0

    archive = spark.read.format("delta").load(config.table("archive"))
    assert sorted(r.request_id for r in archive.select("request_id").collect()) == ids
    features_messages = {
        r["request_id"]: r
        for r in consume(config.kafka.bootstrap_servers, config.kafka.topics.features.name)
        if r["kind"] == "request"
    }
    for row in archive.select("request_id", "message").collect():
        assert json.loads(row.message) == features_messages[row.request_id]


def test_a_feature_added_to_the_spec_leaves_model_jobs_scoring_and_one_removed_fails_their_start(spark, config):
    """Schema evolution: the features job restarts on version 2 of the spec, with one optional raw
    field and one feature more; the model job, not restarted, scores its records as before. A spec
    without a feature the model needs stops the model job at start, naming it."""
    bootstrap, topics = config.kafka.bootstrap_servers, config.kafka.topics

    def scored(ids: list[str]) -> list[dict]:
        return [s for s in consume(bootstrap, topics.scores.name, idle_ms=1000) if s["request_id"] in ids]

    def send(events: list[str]) -> list[str]:
        produce(bootstrap, topics.raw.name, events)
        return [json.loads(e)["request_id"] for e in events]

    spec_file = config.conf_dir / "features.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    features_job = featurize.build_all(spark, config)
    model_job = score.build(spark, config, "champion")
    try:
        before = send(fresh_events(5, seed=3))
        assert len(wait_for(lambda: scored(before), lambda s: len(s) >= 5, "scores of the 5 requests before")) == 5
        stop_all(features_job)

        spec["schema_version"] = 2
        spec["raw"]["tip"] = {"type": "double", "checks": {"min": 0}}
        spec["features"]["tip_share"] = {"expr": "coalesce(tip, 0) / greatest(amount, 1)"}
        spec_file.write_text(yaml.safe_dump(spec))
        features_job = featurize.build_all(spark, load_config(config.conf_dir))
        after = send([json.dumps({**json.loads(e), "tip": 2.0}) for e in fresh_events(5, seed=4)])
        scores = wait_for(lambda: scored(after), lambda s: len(s) >= 5, "scores of the 5 requests after the new spec")
        assert model_job.isActive
    finally:
        stop_all([*features_job, model_job])
    # Kafka records leave out null fields: a score without an error has no "error".
    assert len(scores) == 5 and all("error" not in s and s["score"] is not None for s in scores)
    records = {r["request_id"]: r for r in consume(bootstrap, topics.features.name) if r["kind"] == "request"}
    assert {records[i]["schema_version"] for i in after} == {2}
    assert all("tip_share" in records[i]["features"] for i in after)
    assert all("tip_share" not in records[i]["features"] for i in before)

    del spec["features"]["amount_ratio"]
    spec_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"models/champion.yaml: features: model version \d+ also needs amount_ratio"):
        score.build(spark, load_config(config.conf_dir), "champion")
