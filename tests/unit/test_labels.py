"""Label records: which are usable and why not, one label per request, and an idempotent MERGE."""

from __future__ import annotations

from datetime import UTC, datetime

from chispa import assert_df_equality
from pyspark.sql import functions as F

from comparison.labels import check_labels, latest_per_request, merge_labels, quarantine_records

ARRIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
KAFKA_ROW = "value string, topic string, partition int, offset long, timestamp timestamp"


def messages(spark, values: list[str]):
    return spark.createDataFrame([(v, "rdv.labels", 0, i, ARRIVED) for i, v in enumerate(values)], KAFKA_ROW)


def test_each_unusable_record_has_the_first_rule_it_breaks(spark):
    checked = check_labels(
        messages(
            spark,
            [
                '{"request_id": "a", "label": 1}',
                '{"request_id": "b", "label": false, "labelled_at": "2026-03-02T08:00:00Z"}',
                '{"request_id": "c", "label": 12.5}',
                "not json",
                "[1, 2]",
                '{"label": 1}',
                '{"request_id": "d"}',
                '{"request_id": "e", "label": "yes"}',
                '{"request_id": "f", "label": NaN}',
                '{"request_id": "g", "label": 1, "labelled_at": "soon"}',
            ],
        )
    )
    expected = spark.createDataFrame(
        [
            ("a", 1.0, ARRIVED, None),
            ("b", 0.0, datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC), None),
            ("c", 12.5, ARRIVED, None),
            (None, None, ARRIVED, "not_json"),
            (None, None, ARRIVED, "not_object"),
            (None, 1.0, ARRIVED, "missing:request_id"),
            ("d", None, ARRIVED, "missing:label"),
            ("e", None, ARRIVED, "wrong_type:label"),
            ("f", float("nan"), ARRIVED, "not_finite:label"),
            ("g", 1.0, ARRIVED, "wrong_type:labelled_at"),
        ],
        "request_id string, label double, labelled_at timestamp, reason string",
    )
    assert_df_equality(
        checked.select("request_id", "label", "labelled_at", "reason"),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
        allow_nan_equality=True,
    )


def test_a_quarantined_label_keeps_its_payload_and_place(spark):
    bad = quarantine_records(check_labels(messages(spark, ['{"request_id": "a", "label": 1}', '{"request_id": "e"}'])))
    rows = bad.select(
        "reason", "raw", "source_topic", "source_partition", "source_offset", F.unix_millis("source_timestamp")
    ).collect()
    assert [tuple(r) for r in rows] == [
        ("missing:label", '{"request_id": "e"}', "rdv.labels", 0, 1, int(ARRIVED.timestamp() * 1000))
    ]


def test_the_latest_label_of_a_request_wins_within_a_batch(spark):
    latest = latest_per_request(
        check_labels(
            messages(
                spark,
                [
                    '{"request_id": "a", "label": 1, "labelled_at": "2026-03-02T00:00:00Z"}',
                    '{"request_id": "a", "label": 0, "labelled_at": "2026-03-01T00:00:00Z"}',
                    '{"request_id": "b", "label": 0}',
                    '{"request_id": "b", "label": 1}',  # same time: the later place in the topic wins
                ],
            )
        )
    )
    assert sorted((r.request_id, r.label) for r in latest.collect()) == [("a", 1.0), ("b", 1.0)]


def test_merging_is_idempotent_and_only_a_newer_label_replaces_one(spark, tmp_path):
    path = str(tmp_path / "labels")

    def merge(values):
        return merge_labels(spark, path, latest_per_request(check_labels(messages(spark, values))))

    first = [
        '{"request_id": "a", "label": 0, "labelled_at": "2026-03-02T00:00:00Z"}',
        '{"request_id": "b", "label": 1}',
    ]
    assert merge(first) == (2, 0)
    assert merge(first) == (0, 0)  # a replay changes nothing
    assert merge(['{"request_id": "a", "label": 1, "labelled_at": "2026-03-01T00:00:00Z"}']) == (0, 0)  # older
    assert merge(['{"request_id": "a", "label": 1, "labelled_at": "2026-03-03T00:00:00Z"}']) == (0, 1)  # a correction
    rows = spark.read.format("delta").load(path)
    assert sorted((r.request_id, r.label) for r in rows.collect()) == [("a", 1.0), ("b", 1.0)]
