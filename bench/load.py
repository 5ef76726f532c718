"""The benchmark's load: generated raw events sent at a fixed rate, each stamped with the time it is
sent, and what came out at the end of the path (counts by offsets, latency by record).

Sending is paced in ticks of a few milliseconds; each tick sends the events due by then, stamped
with one wall-clock time, from pre-encoded bodies, through librdkafka (confluent-kafka): the
generator shares the machine with what it measures, and kafka-python would take a third of a core
at 5,000 events/s where librdkafka takes a few percent. Its own CPU is measured and reported.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition

from rdv.demo.generator import generate_events, raw_json

TICK_S = 0.005
_EVENT_TIME = re.compile(rb'"event_time":\s*"([^"]+)"')


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Sent:
    events: int
    started: float  # wall clock, epoch seconds
    ended: float
    cpu_s: float  # the generator's own CPU

    @property
    def rate(self) -> float:
        return self.events / max(self.ended - self.started, 1e-9)


class Load:
    """Raw events for rdv.raw, from the demo's generator, sent again and again under new ids."""

    def __init__(self, bootstrap: str, topic: str, distinct_events: int = 20_000, seed: int = 7):
        self.topic = topic
        # Each body is the event's JSON without its first brace, request_id and event_time: those
        # two go in front of it when the event is sent.
        self.bodies = []
        for message in raw_json(generate_events(distinct_events, seed=seed)):
            fields = {k: v for k, v in json.loads(message).items() if k not in ("request_id", "event_time")}
            self.bodies.append(json.dumps(fields, separators=(",", ":"))[1:].encode())
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": 1,
                "linger.ms": 5,
                "queue.buffering.max.messages": 1_000_000,
                "log_level": 3,
            }
        )

    def send(self, rate: float, seconds: float, prefix: str) -> Sent:
        """Send rate * seconds events over `seconds`, ids <prefix>-<n>; returns once all are acknowledged."""
        total = int(rate * seconds)
        bodies, n_bodies, produce, topic = self.bodies, len(self.bodies), self.producer.produce, self.topic
        cpu_start, started = time.process_time(), time.time()
        sent = 0
        while sent < total:
            now = time.time()
            due = min(total, int((now - started) * rate) + 1)
            stamp = b'","event_time":"' + _iso(now).encode() + b'",'
            while sent < due:
                request_id = f"{prefix}-{sent:09d}".encode()
                produce(topic, b'{"request_id":"' + request_id + stamp + bodies[sent % n_bodies], request_id)
                sent += 1
            self.producer.poll(0)
            time.sleep(max(0.0, started + sent / rate - time.time(), TICK_S if sent < total else 0.0))
        self.producer.flush()
        return Sent(total, started, time.time(), time.process_time() - cpu_start)

    def close(self) -> None:
        """Flush, and let go of the producer: librdkafka's handle ends with its last reference,
        before the broker stops (it would log its lost connections if it lived on)."""
        self.producer.flush()
        del self.producer


class Offsets:
    """One consumer for many end-offset reads: sampling every second must cost next to nothing."""

    def __init__(self, bootstrap: str, topics: list[str]):
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap)
        self.partitions = {
            t: [TopicPartition(t, p) for p in sorted(self.consumer.partitions_for_topic(t) or ())] for t in topics
        }

    def by_partition(self) -> dict[str, dict[int, int]]:
        everything = [p for ps in self.partitions.values() for p in ps]
        ends = self.consumer.end_offsets(everything)
        return {t: {p.partition: ends[p] for p in ps} for t, ps in self.partitions.items()}

    def close(self) -> None:
        self.consumer.close()


def latencies(bootstrap: str, topic: str, since_ms: int, until_ms: int, prefix: str) -> dict[str, np.ndarray]:
    """Seconds from event to output for the records of one step (request ids starting with prefix)
    whose events were sent in [since_ms, until_ms): a record's Kafka timestamp is when its job
    produced it. Keyed by the record's `reason` where it has one (the rendezvous' answers), else "all"."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    by_reason: dict[str, list[float]] = {}
    key_prefix = prefix.encode()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        starts = consumer.offsets_for_times({p: since_ms for p in partitions})
        ends = consumer.end_offsets(partitions)
        remaining = {}
        for p in partitions:
            start = starts[p].offset if starts.get(p) else ends[p]
            consumer.seek(p, start)
            if start < ends[p]:
                remaining[p] = ends[p]
        while remaining:
            batch = consumer.poll(timeout_ms=2000, max_records=50_000)
            if not batch:
                break
            for partition, records in batch.items():
                for record in records:
                    if record.offset >= remaining.get(partition, 0):
                        continue
                    if record.key is None or not record.key.startswith(key_prefix):
                        continue
                    found = _EVENT_TIME.search(record.value)
                    event_ms = datetime.fromisoformat(found.group(1).decode()).timestamp() * 1000
                    if not since_ms <= event_ms < until_ms:
                        continue
                    reason = re.search(rb'"reason":"([^"]+)"', record.value)
                    by_reason.setdefault(reason.group(1).decode() if reason else "all", []).append(
                        (record.timestamp - event_ms) / 1000
                    )
                if records and records[-1].offset + 1 >= remaining.get(partition, 0):
                    remaining.pop(partition, None)
    finally:
        consumer.close()
    return {reason: np.array(values) for reason, values in by_reason.items()}


def model_costs(bootstrap: str, topic: str, since_s: float, until_s: float) -> dict[str, dict]:
    """Each model's CPU s per 1,000 requests in [since_s, until_s), from the samples its job sent to
    rdv.costs (models/cost.py): in one application, its query's tasks and pandas UDF, without the
    driver's planning of its micro-batches."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    samples = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for record in consumer:
            samples.append(json.loads(record.value))
    finally:
        consumer.close()
    return per_model_costs(samples, since_s, until_s)


def per_model_costs(samples: list[dict], since_s: float, until_s: float) -> dict[str, dict]:
    """per model: its samples measured wholly within [since_s, until_s), summed; a sample that
    straddles either end is left out, so the ratio is of whole samples."""
    sums: dict[str, dict] = {}
    for sample in samples:
        start = datetime.fromisoformat(sample["measured_from"]).timestamp()
        end = datetime.fromisoformat(sample["measured_to"]).timestamp()
        if since_s <= start and end <= until_s:
            total = sums.setdefault(
                sample["model"], {"cpu_s": 0.0, "requests": 0, "measured_by": sample["measured_by"]}
            )
            total["cpu_s"] += sample["cpu_s"]
            total["requests"] += sample["requests"]
    return {
        model: {
            **total,
            "cpu_s": round(total["cpu_s"], 3),
            "cpu_s_per_1k": round(1000 * total["cpu_s"] / total["requests"], 3),
        }
        for model, total in sorted(sums.items())
        if total["requests"]
    }
