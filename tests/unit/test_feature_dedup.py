"""Deduplication of request ids in the features job's stream, on a file source standing in for rdv.raw."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from features.transform import check_raw, flag_duplicates, with_arrival_marks
from tests.unit.test_features_transform import GOOD, KEY, SPEC

WINDOW_MS = 2000
RAW = "value string, topic string, partition int, offset long, timestamp timestamp"


@pytest.fixture
def features_stream(spark, tmp_path):
    """send() writes one micro-batch of raw events (each arriving when it happened); every record
    the batches flagged so far is in `out`, and the plan of each micro-batch with data in `plans`."""
    source = tmp_path / "raw"
    source.mkdir()
    checked = check_raw(spark.readStream.schema(RAW).json(str(source)), SPEC, KEY)
    out, plans, offsets = [], [], iter(range(1_000_000))

    def batch(frame, batch_id):
        rows = flag_duplicates(frame, WINDOW_MS).select("offset", "request_id", "reason").collect()
        if rows:
            out.extend(rows)
            plans.append(query._jsq.explainInternal(False))  # the streaming plan of this micro-batch

    query = (
        with_arrival_marks(checked, WINDOW_MS)
        .writeStream.foreachBatch(batch)
        .option("checkpointLocation", str(tmp_path / "ck"))
        .start()
    )

    class Stream:
        def send(self, *events):
            arrived = datetime.now(UTC)
            lines = []
            for event in events:
                event = {**event, "event_time": arrived.isoformat()}
                lines.append(
                    json.dumps(
                        {
                            "value": json.dumps(event),
                            "topic": "rdv.raw",
                            "partition": 0,
                            "offset": next(offsets),
                            "timestamp": arrived.isoformat(),
                        }
                    )
                )
            (source / f"{len(list(source.iterdir())):04d}.json").write_text("\n".join(lines) + "\n")
            query.processAllAvailable()

        def reasons(self):
            return [(r.request_id, r.reason) for r in sorted(out, key=lambda r: r.offset)]

        def last_plan(self):
            return plans[-1]

    yield Stream()
    query.stop()


def test_a_request_id_seen_again_within_the_window_is_a_duplicate(features_stream):
    no_id = {k: v for k, v in GOOD.items() if k != "request_id"}
    features_stream.send(
        {**GOOD, "request_id": "a"},
        {**GOOD, "request_id": "a"},  # twice in one batch
        {**GOOD, "request_id": "b", "amount": -1.0},  # bad: not a first arrival
        no_id,
        no_id,
    )  # no id of their own: never duplicates
    features_stream.send(
        {**GOOD, "request_id": "b"},  # b fixed, replayed: its first good arrival
        {**GOOD, "request_id": "a"},
    )  # a, a batch later
    assert features_stream.reasons() == [
        ("a", None),
        ("a", "duplicate:request_id"),
        ("b", "below_min:amount"),
        ("rq-0-3", None),
        ("rq-0-4", None),
        ("b", None),
        ("a", "duplicate:request_id"),
    ]
    # Both branches read the one shuffle of the parsed records: the source is scanned once.
    assert features_stream.last_plan().count("ReusedExchange") == 1


def test_an_id_is_new_again_once_the_window_has_passed(features_stream):
    features_stream.send({**GOOD, "request_id": "a"})
    time.sleep(WINDOW_MS / 1000 + 0.5)
    features_stream.send({**GOOD, "request_id": "c"})  # moves the watermark past a's first arrival
    features_stream.send({**GOOD, "request_id": "a"})
    assert features_stream.reasons() == [("a", None), ("c", None), ("a", None)]
