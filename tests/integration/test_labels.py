"""Ground truth through the real broker and Delta: the recorder's labels, a replay
of the topic, a backfill from a file, and the unusable records in quarantine."""

from __future__ import annotations

import json

import pytest

from comparison.backfill import backfill_labels
from jobs import record
from rdv.config import ConfigError
from tests.integration.helpers import delta_count
from tests.integration.kafka_io import consume, produce


def labels_in(spark, config) -> dict[str, float]:
    return {r.request_id: r.label for r in spark.read.format("delta").load(config.table("labels")).collect()}


def test_streamed_labels_are_kept_once_per_request_and_bad_ones_quarantined(spark, config):
    bootstrap, topics = config.kafka.bootstrap_servers, config.kafka.topics
    good = [json.dumps({"request_id": f"r{i}", "label": i % 2}) for i in range(20)]
    correction = json.dumps({"request_id": "r0", "label": 1, "labelled_at": "2099-01-01T00:00:00Z"})
    bad = ['{"request_id": "r99", "label": "fraud"}', "label: 1"]
    produce(bootstrap, topics.labels.name, good + bad + [correction])
    query = record.build(spark, config)
    try:
        query.processAllAvailable()
        produce(bootstrap, topics.labels.name, good)  # sent again: nothing changes
        query.processAllAvailable()
    finally:
        query.stop()
    assert labels_in(spark, config) == {**{f"r{i}": float(i % 2) for i in range(20)}, "r0": 1.0}  # r0 corrected
    quarantined = consume(bootstrap, topics.quarantine.name, idle_ms=1000)
    assert sorted((q["reason"], q["raw"], q["source_topic"]) for q in quarantined) == [
        ("not_json", "label: 1", topics.labels.name),
        ("wrong_type:label", bad[0], topics.labels.name),
    ]


def test_a_backfill_from_a_file_merges_like_the_stream_and_quarantines_what_it_cannot_use(spark, config, tmp_path):
    csv = tmp_path / "confirmed.csv"
    csv.write_text("request_id,label,labelled_at\na,1,2026-03-01T00:00:00Z\nb,0,\n,1,\nc,maybe,\n")
    first = backfill_labels(spark, config, str(csv))
    assert (first.rows, first.inserted, first.updated) == (4, 2, 0)
    assert first.quarantined == {"missing:request_id": 1, "wrong_type:label": 1}
    again = backfill_labels(spark, config, str(csv))
    assert (again.inserted, again.updated) == (0, 0)
    assert labels_in(spark, config) == {"a": 1.0, "b": 0.0}
    table = spark.read.format("delta").load(config.table("labels"))
    assert table.where("request_id = 'a' AND labelled_at = TIMESTAMP '2026-03-01 00:00:00'").count() == 1
    quarantine = spark.read.format("delta").load(config.table("quarantine"))
    assert quarantine.where(f"source_topic = 'file:{csv}'").count() == 4  # both loads' bad rows, kept

    jsonl = tmp_path / "corrections.jsonl"
    jsonl.write_text(json.dumps({"request_id": "a", "label": 0, "labelled_at": "2026-03-05T00:00:00Z"}) + "\n")
    assert backfill_labels(spark, config, str(jsonl)).updated == 1
    assert labels_in(spark, config)["a"] == 0.0


def test_a_source_without_the_label_columns_is_refused_naming_them(spark, config, tmp_path):
    csv = tmp_path / "wrong.csv"
    csv.write_text("id,fraud\nx,1\n")
    with pytest.raises(ConfigError, match=r"wrong.csv: no column request_id, label .*the file has id, fraud"):
        backfill_labels(spark, config, str(csv))
    with pytest.raises(ConfigError, match="no such file, directory or table"):
        backfill_labels(spark, config, str(tmp_path / "missing.csv"))
    assert delta_count(spark, config.table("labels")) == 0
