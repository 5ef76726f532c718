"""Which quarantined records `rdv quarantine replay` sends back, and as what messages."""

from __future__ import annotations

from datetime import UTC, date, datetime

from chispa import assert_df_equality

from features.quarantine import replay_messages, replayable

QUARANTINE = (
    "reason string, raw string, source_topic string, source_partition int, source_offset long, "
    "source_timestamp timestamp, quarantine_date date"
)
ARRIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def quarantine_rows(spark):
    rows = [
        ("below_min:amount", '{"request_id": "a", "amount": 5}', "rdv.raw", 0, 1, ARRIVED, date(2026, 3, 1)),
        ("below_min:distance_km", '{"request_id": "b"}', "rdv.raw", 0, 2, ARRIVED, date(2026, 3, 1)),
        ("above_max:amount", '{"request_id": "c"}', "rdv.raw", 1, 1, ARRIVED, date(2026, 3, 2)),
        ("not_json", "{oops", "rdv.raw", 1, 2, ARRIVED, date(2026, 3, 2)),
        ("duplicate:request_id", '{"request_id": "a"}', "rdv.raw", 1, 3, ARRIVED, date(2026, 3, 2)),
        ("too_old:event_time", '{"request_id": "d"}', "rdv.raw", 1, 4, ARRIVED, date(2026, 3, 2)),
        ("wrong_type:label", '{"request_id": "a", "label": "yes"}', "rdv.labels", 0, 7, ARRIVED, date(2026, 3, 2)),
        ("missing:label", '{"request_id": "b"}', "file:labels.csv", None, 3, ARRIVED, date(2026, 3, 2)),
    ]
    return spark.createDataFrame(rows, QUARANTINE)


def offsets(frame) -> list[tuple[int, int]]:
    return sorted((r.source_partition, r.source_offset) for r in frame.collect())


TOPICS = ("rdv.raw", "rdv.labels")


def test_by_default_every_reason_a_fix_can_change_and_none_replayed_before(spark):
    quarantine = quarantine_rows(spark).where("source_topic = 'rdv.raw'")
    assert offsets(replayable(quarantine, None)) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    replayed = quarantine.where("source_offset = 1 AND source_partition = 0").select(
        "source_topic", "source_partition", "source_offset"
    )
    assert offsets(replayable(quarantine, replayed)) == [(0, 2), (1, 1), (1, 2)]


def test_records_go_back_only_to_the_topics_named_never_to_a_file(spark):
    quarantine = quarantine_rows(spark)
    assert offsets(replayable(quarantine, None, ["wrong_type", "missing"], topics=TOPICS)) == [(0, 7)]
    assert offsets(replayable(quarantine, None, ["not_json"], topics=["rdv.labels"])) == []


def test_reasons_are_chosen_whole_or_by_rule_and_days_by_since(spark):
    quarantine = quarantine_rows(spark).where("source_topic = 'rdv.raw'")
    assert offsets(replayable(quarantine, None, ["below_min"])) == [(0, 1), (0, 2)]
    assert offsets(replayable(quarantine, None, ["below_min:amount", "not_json"])) == [(0, 1), (1, 2)]
    assert offsets(replayable(quarantine, None, ["below"])) == []  # a rule is a whole word
    assert offsets(replayable(quarantine, None, ["duplicate:request_id"])) == [(1, 3)]
    assert offsets(replayable(quarantine, None, since=date(2026, 3, 2))) == [(1, 1), (1, 2)]


def test_a_replayed_message_is_the_payload_to_its_topic_keyed_by_its_id_at_its_first_arrival_time(spark):
    chosen = replayable(
        quarantine_rows(spark), None, ["below_min:amount", "not_json", "wrong_type:label"], topics=TOPICS
    )
    arrived_ms = int(ARRIVED.timestamp() * 1000)
    expected = spark.createDataFrame(
        [
            ("rdv.raw", "a", '{"request_id": "a", "amount": 5}', arrived_ms),
            ("rdv.raw", None, "{oops", arrived_ms),
            ("rdv.labels", "a", '{"request_id": "a", "label": "yes"}', arrived_ms),
        ],
        "topic string, key string, value string, timestamp_ms long",
    )
    messages = replay_messages(chosen)
    assert_df_equality(messages, expected, ignore_row_order=True, ignore_nullable=True)
