"""Heartbeats: event time keeps moving when traffic stops, and never runs ahead of the requests.

The rendezvous decides deferred requests when the watermark passes them, and a watermark only
moves with data. The features job therefore sends a heartbeat ({"event_time": now}) to
rdv.heartbeats every interval while its query runs. The features query reads that topic together
with rdv.raw and passes each heartbeat on to rdv.features (features.transform.route): a micro-batch
fixes the offsets of both topics at once, so a heartbeat reaches rdv.features only with or after
every raw event sent before it. Published straight to rdv.features instead, heartbeats outran a
features job that was slow (at start, or under load), moved the watermark past requests it had
not yet published, and those requests were dropped as late, never answered.
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone

from kafka import KafkaProducer
from pyspark.sql.streaming import StreamingQuery

from rdv.config import PipelineConfig
from rdv.kafka_security import client_settings
from rdv.durations import duration_ms

log = logging.getLogger(__name__)


def heartbeat_record(now: datetime) -> bytes:
    stamp = now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"event_time": stamp}).encode()


def start_heartbeat(config: PipelineConfig, query: StreamingQuery) -> threading.Thread:
    """Send heartbeats to every partition of rdv.heartbeats for as long as the query is active."""
    topic = config.kafka.topics.heartbeats
    interval_s = duration_ms(config.features.heartbeat_interval) / 1000

    def beat() -> None:
        producer = KafkaProducer(**client_settings(config), linger_ms=0)
        stopped = threading.Event()
        try:
            while query.isActive and not stopped.wait(interval_s):
                record = heartbeat_record(datetime.now(timezone.utc))
                for partition in range(topic.partitions):
                    producer.send(topic.name, value=record, partition=partition)
                producer.flush()
        except Exception:  # the query keeps running; its watermark only stalls when quiet
            log.exception("heartbeats on %s stopped", topic.name)
        finally:
            producer.close()

    thread = threading.Thread(target=beat, name="rdv-heartbeat", daemon=True)
    thread.start()
    return thread
