"""Heartbeats on rdv.features: event time keeps moving when traffic stops.

The rendezvous decides deferred requests when the watermark passes them, and a watermark only
moves with data. The features job therefore publishes a heartbeat record (kind 'heartbeat',
event_time now) every interval while its query runs; every consumer ignores it but the
rendezvous's watermark.
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone

from kafka import KafkaProducer
from pyspark.sql.streaming import StreamingQuery

from rdv.config import PipelineConfig, duration_ms

log = logging.getLogger(__name__)


def heartbeat_record(schema_version: int, now: datetime) -> bytes:
    stamp = now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"schema_version": schema_version, "kind": "heartbeat", "event_time": stamp}).encode()


def start_heartbeat(config: PipelineConfig, query: StreamingQuery) -> threading.Thread:
    """Publish heartbeats to every partition of rdv.features for as long as the query is active."""
    topic = config.kafka.topics.features
    interval_s = duration_ms(config.features.heartbeat_interval) / 1000

    def beat() -> None:
        producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, linger_ms=0)
        stopped = threading.Event()
        try:
            while query.isActive and not stopped.wait(interval_s):
                record = heartbeat_record(config.features.schema_version, datetime.now(timezone.utc))
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
