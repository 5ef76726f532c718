"""Replaying generated events into rdv.raw at a given rate, as any Kafka producer would."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone

from kafka import KafkaProducer

from rdv.demo.generator import BAD_MESSAGES, generate_events, raw_json


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replay(
    bootstrap: str,
    topic: str,
    events: int,
    rate: float,
    seed: int = 7,
    drift_at: float = 0.5,
    bad_every: int = 0,
    id_prefix: str = "demo",
    progress: Callable[[int, int], None] | None = None,
    report_every_s: float = 5.0,
) -> dict[str, int]:
    """Send `events` generated events at `rate` per second, each stamped with the time it is
    sent; with bad_every > 0, one bad message after every bad_every events. Returns counts."""
    messages = raw_json(generate_events(events, seed=seed, drift_at=drift_at))
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    sent = bad = 0
    started = time.monotonic()
    next_report = started + report_every_s
    try:
        for i, message in enumerate(messages):
            record = json.loads(message)
            record["request_id"] = f"{id_prefix}-{i:08d}"
            record["event_time"] = now_iso()
            producer.send(topic, key=record["request_id"].encode(), value=json.dumps(record).encode())
            sent += 1
            if bad_every and (i + 1) % bad_every == 0:
                producer.send(topic, value=BAD_MESSAGES[bad % len(BAD_MESSAGES)][1].encode())
                bad += 1
            ahead = started + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if progress and time.monotonic() >= next_report:
                progress(i + 1, events)
                next_report += report_every_s
        producer.flush()
    finally:
        producer.close()
    return {"events": sent, "bad": bad}
