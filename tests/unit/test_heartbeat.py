"""When the features job publishes a heartbeat (rdv/heartbeat.py): never before its query has read
past every raw record that arrived before the heartbeat's time, and only while a request waits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from rdv.heartbeat import Heartbeats, covers, heartbeat_record, processed_offsets

T0 = datetime(2026, 3, 1, 12, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_heartbeat_waits_until_the_query_has_read_past_the_end_offsets_of_its_time():
    book = Heartbeats(pending_s=20, started=0)
    # At t=1 rdv.raw ends at 5 and 3; the query has read 5 and 2 of them: not yet.
    assert book.tick(1, at(1), {0: 5, 1: 3}, {0: 5, 1: 2}) is None
    # At t=2 more arrived (ends 6, 4); a micro-batch has read up to 5, 3: the time of t=1 is due.
    assert book.tick(2, at(2), {0: 6, 1: 4}, {0: 5, 1: 3}) == at(1)
    # Then up to 6, 4: t=2 and t=3 are both covered; the latest of them goes out.
    assert book.tick(3, at(3), {0: 6, 1: 4}, {0: 6, 1: 4}) == at(3)


def test_an_idle_query_gets_heartbeats_until_no_request_can_wait_any_more():
    book = Heartbeats(pending_s=20, started=0)
    ends = {0: 10, 1: 10}
    assert book.tick(1, at(1), ends, ends) == at(1)  # the first read since the start
    assert book.tick(15, at(15), ends, ends) == at(15)
    assert book.tick(21.5, at(21.5), ends, ends) is None  # 20 s after the last read: none needed
    assert book.tick(40, at(40), ends, ends) is None
    # A record arrives and is read: heartbeats again, from the first time past it.
    assert book.tick(41, at(41), {0: 11, 1: 10}, ends) is None
    assert book.tick(42, at(42), {0: 11, 1: 10}, {0: 11, 1: 10}) == at(42)


def test_no_heartbeat_before_the_first_micro_batch():
    book = Heartbeats(pending_s=20, started=0)
    assert book.tick(1, at(1), {0: 0}, None) is None
    assert book.tick(2, at(2), {0: 0}, {0: 0}) == at(2)


def test_a_partition_the_query_has_not_seen_counts_as_read_only_while_empty():
    assert covers({0: 4}, {0: 4, 1: 0})
    assert not covers({0: 4}, {0: 4, 1: 1})
    assert not covers(None, {0: 0})


def test_the_processed_offsets_come_from_the_progress_report_of_the_source_on_the_topic():
    progress = {"sources": [{"endOffset": json.dumps({"rdv.raw": {"0": 7, "1": 9}})}]}
    assert processed_offsets(progress, "rdv.raw") == {0: 7, 1: 9}
    assert processed_offsets(progress, "other") is None
    assert processed_offsets(None, "rdv.raw") is None


def test_a_heartbeat_is_a_feature_record_of_kind_heartbeat():
    stamp = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert json.loads(heartbeat_record(stamp, 3)) == {
        "schema_version": 3,
        "kind": "heartbeat",
        "event_time": "2026-03-01T12:00:00.250Z",
    }
