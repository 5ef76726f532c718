"""Reading and writing the test's topics with a plain Kafka client, as any user would."""

from __future__ import annotations

import json

from kafka import KafkaConsumer, KafkaProducer


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in values:
        producer.send(topic, value=value.encode())
    producer.flush()
    producer.close()


def consume_bytes(bootstrap: str, topic: str, idle_ms: int = 3000) -> list[tuple[bytes | None, bytes]]:
    """Every message on the topic so far, as (key, value) bytes exactly as stored."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
    )
    try:
        return [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def consume(bootstrap: str, topic: str, idle_ms: int = 3000) -> list[dict]:
    """Every message on the topic so far, as JSON."""
    return [json.loads(value) for _, value in consume_bytes(bootstrap, topic, idle_ms)]
