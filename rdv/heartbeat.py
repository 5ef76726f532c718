"""Heartbeats: the rendezvous's event time keeps moving while a request waits for its decision,
never runs ahead of the requests, and costs nothing when nothing waits.

The rendezvous decides a deferred request once its watermark passes the request's decision point,
and a watermark moves only with data. So the features job's driver publishes a heartbeat record
(`{"schema_version", "kind": "heartbeat", "event_time": T}`) to rdv.heartbeats every
`features.heartbeat_interval`, and the rendezvous reads that topic in one source with rdv.features.

Never ahead of the requests: a heartbeat of time T goes out only once the features query has
finished a micro-batch whose offsets on rdv.raw reach the end offsets rdv.raw had at T. Every raw
event that arrived before T is then published on rdv.features (or quarantined) and acknowledged
by the broker, so the rendezvous cannot see the heartbeat without those requests. An event that
arrives after T has an event time of at least T - limits.max_lateness, as before.

Only while needed: heartbeats go out while a request the features job published may still wait for
its answer, that is until the watermark passes the longest decision point (Timing.watermark_ms,
plus two intervals and two triggers: pending_seconds) after the last micro-batch that read anything. No other query reads
rdv.heartbeats, so the models, the decoy and the recorders never run a micro-batch for a
heartbeat, and an idle pipeline runs none at all (bench/README.md, "Idle").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pyspark.sql.streaming import StreamingQuery

from rdv.config import PipelineConfig
from rdv.durations import duration_ms
from rdv.kafka_security import client_settings

log = logging.getLogger(__name__)

Offsets = dict[int, int]  # partition -> offset


def heartbeat_record(event_time: datetime, schema_version: int) -> bytes:
    """A heartbeat as it goes on rdv.heartbeats: a feature record of kind heartbeat
    (features/records.py), so the rendezvous parses both topics alike."""
    stamp = event_time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"schema_version": schema_version, "kind": "heartbeat", "event_time": stamp}).encode()


def processed_offsets(progress: dict | None, topic: str) -> Offsets | None:
    """The offsets on `topic` up to which the query's last finished micro-batch read, from its
    progress report; None before its first micro-batch."""
    for source in (progress or {}).get("sources", []):
        end = source.get("endOffset")
        offsets = json.loads(end) if isinstance(end, str) else end
        if isinstance(offsets, dict) and topic in offsets:
            return {int(p): int(o) for p, o in offsets[topic].items()}
    return None


def covers(processed: Offsets | None, ends: Offsets) -> bool:
    """Whether every record before `ends` was read (a partition the query has not seen yet counts
    as read only while it is empty)."""
    if processed is None:
        return False
    return all(processed.get(partition, 0) >= end for partition, end in ends.items())


class Heartbeats:
    """When to publish which heartbeat: the thread below feeds it, a unit test can too.

    Every interval, `tick` gets the time, the end offsets rdv.raw had at that time and the offsets
    the features query has finished, and returns the event time of the heartbeat to publish now:
    the latest time whose end offsets the query has read past, if any, and only while a request may
    be waiting (for pending_s after the query last read anything, or after the start).
    """

    def __init__(self, pending_s: float, started: float):
        self.pending_s = pending_s
        self._last_input = started  # a restart may find requests still waiting
        self._last_processed: Offsets | None = None
        self._waiting: list[tuple[datetime, Offsets]] = []  # oldest first; end offsets only grow

    def tick(self, now: float, event_time: datetime, ends: Offsets, processed: Offsets | None) -> datetime | None:
        if processed != self._last_processed:
            self._last_input, self._last_processed = now, processed
        if now - self._last_input > self.pending_s:
            self._waiting.clear()
            return None
        self._waiting.append((event_time, ends))
        due = None
        while self._waiting and covers(processed, self._waiting[0][1]):
            due = self._waiting.pop(0)[0]
        return due


def pending_seconds(config: PipelineConfig) -> float:
    """How long after the last raw record a request may still wait for its answer: its longest
    wait (Timing) and the transit until the watermark passes its decision point; then one
    more micro-batch with data, in which the rendezvous emits what the watermark released (it runs
    none without data, rdv/jobrun.py); two heartbeat intervals and two triggers for those."""
    return (
        config.timing.watermark_ms
        + 2 * duration_ms(config.features.heartbeat_interval)
        + 2 * duration_ms(config.spark.trigger)
    ) / 1000


def start_heartbeat(config: PipelineConfig, query: StreamingQuery) -> threading.Thread:
    """Publish heartbeats to every partition of rdv.heartbeats while the query is active and a
    request may be waiting (see Heartbeats)."""
    raw, target = config.kafka.topics.raw.name, config.kafka.topics.heartbeats
    interval_s = duration_ms(config.features.heartbeat_interval) / 1000
    book = Heartbeats(pending_seconds(config), time.monotonic())
    version = config.spec.schema_version

    def beat() -> None:
        settings = client_settings(config)
        producer = KafkaProducer(**settings, linger_ms=0)
        consumer = KafkaConsumer(**settings, enable_auto_commit=False)
        stopped = threading.Event()
        try:
            partitions = [TopicPartition(raw, p) for p in sorted(consumer.partitions_for_topic(raw) or [])]
            while query.isActive and not stopped.wait(interval_s):
                event_time = datetime.now(UTC)  # before the end offsets: nothing after it is claimed
                ends = {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
                progress = query.lastProgress
                processed = processed_offsets(json.loads(progress.json) if progress is not None else None, raw)
                if (due := book.tick(time.monotonic(), event_time, ends, processed)) is not None:
                    record = heartbeat_record(due, version)
                    for partition in range(target.partitions):
                        producer.send(target.name, value=record, partition=partition)
                    producer.flush()
        except Exception:  # the query keeps running; the rendezvous's watermark only stalls when quiet
            log.exception("heartbeats to %s stopped", target.name)
        finally:
            producer.close()
            consumer.close()

    thread = threading.Thread(target=beat, name="rdv-heartbeat", daemon=True)
    thread.start()
    return thread
