"""Replaying generated events into rdv.raw at a given rate, as any Kafka producer would, and their
ground truth into rdv.labels some time later, as the business would confirm it."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from kafka import KafkaProducer

from rdv.demo.generator import BAD_MESSAGES, generate_events, raw_json


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replay(
    connection: dict,
    topic: str,
    events: int,
    rate: float,
    seed: int = 7,
    drift_at: float = 0.5,
    bad_every: int = 0,
    id_prefix: str = "demo",
    progress: Callable[[int, int], None] | None = None,
    report_every_s: float = 5.0,
    labels_topic: str | None = None,
    label_delay_s: float = 5.0,
) -> dict[str, int]:
    """Send `events` generated events at `rate` per second, through a producer made with connection
    (rdv.kafka_security.client_settings), each stamped with the time it is
    sent; with bad_every > 0, one bad message after every bad_every events. With labels_topic, each
    event's ground truth (is_fraud) goes there label_delay_s after the event, stamped labelled_at;
    the last ones are waited for. Returns counts."""
    generated = generate_events(events, seed=seed, drift_at=drift_at)
    messages, truths = raw_json(generated), generated["is_fraud"].tolist()
    producer = KafkaProducer(**connection, linger_ms=5, acks="all")
    sent = bad = labelled = 0
    due: deque[tuple[float, str, int]] = deque()  # (when, request_id, label), in the order sent

    def send_due_labels(until: float) -> None:
        nonlocal labelled
        while due and due[0][0] <= until:
            _, request_id, label = due.popleft()
            label_record = {"request_id": request_id, "label": label, "labelled_at": now_iso()}
            producer.send(labels_topic, key=request_id.encode(), value=json.dumps(label_record).encode())
            labelled += 1

    started = time.monotonic()
    next_report = started + report_every_s
    try:
        for i, message in enumerate(messages):
            record = json.loads(message)
            record["request_id"] = f"{id_prefix}-{i:08d}"
            record["event_time"] = now_iso()
            producer.send(topic, key=record["request_id"].encode(), value=json.dumps(record).encode())
            sent += 1
            if labels_topic:
                due.append((time.monotonic() + label_delay_s, record["request_id"], truths[i]))
                send_due_labels(time.monotonic())
            if bad_every and (i + 1) % bad_every == 0:
                producer.send(topic, value=BAD_MESSAGES[bad % len(BAD_MESSAGES)][1].encode())
                bad += 1
            ahead = started + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if progress and time.monotonic() >= next_report:
                progress(i + 1, events)
                next_report += report_every_s
        while due:
            time.sleep(max(0.0, due[0][0] - time.monotonic()))
            send_due_labels(time.monotonic())
        producer.flush()
    finally:
        producer.close()
    return {"events": sent, "bad": bad, "labels": labelled}
