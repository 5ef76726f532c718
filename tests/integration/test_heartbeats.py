"""The rendezvous's clock through the real broker: a heartbeat on rdv.heartbeats never overtakes a
request, and only the rendezvous reads it (rdv/heartbeat.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer

from jobs import featurize
from rdv.demo.generator import generate_events, raw_json
from rdv.demo.replay import now_iso
from tests.integration.helpers import stop_all, wait_for


def records_with_times(bootstrap: str, topic: str) -> list[tuple[dict, int]]:
    """(record, Kafka timestamp in ms) of every message on the topic so far."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    try:
        return [(json.loads(m.value), m.timestamp) for m in consumer]
    finally:
        consumer.close()


def millis(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)


def test_a_heartbeat_is_published_only_after_every_request_that_arrived_before_its_time(spark, config):
    """For each heartbeat of time T published at P: every raw event that arrived on rdv.raw before
    T is on rdv.features by P. Events arrive at 20/s for 6 s, so heartbeats fall among them."""
    bootstrap, topics = config.kafka.bootstrap_servers, config.kafka.topics
    query = featurize.build(spark, config)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        events = []
        for event in raw_json(generate_events(120, seed=5)):
            record = {**json.loads(event), "event_time": now_iso()}  # stamped as it is sent
            events.append(json.dumps(record))
            producer.send(topics.raw.name, value=events[-1].encode())
            time.sleep(0.05)
        producer.flush()
        ids = {json.loads(e)["request_id"] for e in events}
        features = wait_for(
            lambda: records_with_times(bootstrap, topics.features.name),
            lambda found: {r["request_id"] for r, _ in found} >= ids,
            "every request on rdv.features",
        )
        # Heartbeats go on while a request may wait, and come after the last micro-batch.
        sent_last = max(t for _, t in records_with_times(bootstrap, topics.raw.name))
        beats = wait_for(
            lambda: records_with_times(bootstrap, topics.heartbeats.name),
            lambda found: any(millis(b["event_time"]) > sent_last for b, _ in found),
            "a heartbeat after the last event sent",
        )
    finally:
        producer.close()
        stop_all([query])

    arrived = {r["request_id"]: t for r, t in records_with_times(bootstrap, topics.raw.name)}
    published = {r["request_id"]: t for r, t in features}
    assert set(published) >= ids
    during = [(b, t) for b, t in beats if millis(b["event_time"]) <= sent_last]
    assert during, "no heartbeat while the events arrived"
    for beat, beat_published in beats:
        before = [i for i, t in arrived.items() if t < millis(beat["event_time"])]
        late = [i for i in before if published[i] > beat_published]
        assert not late, f"heartbeat {beat['event_time']} published before {len(late)} earlier requests"
    assert {b["kind"] for b, _ in beats} == {"heartbeat"}
    assert {r["kind"] for r, _ in features} == {"request"}
