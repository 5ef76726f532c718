"""The local broker: real, idempotent, reachable by any Kafka client, stopped by its pid."""

from __future__ import annotations

import socket

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from rdv.operations.kafka_local import LocalBroker, ensure_topics, pipeline_topics
from tests.helpers import make_config


def test_up_is_idempotent_and_creates_the_configured_topics(broker, tmp_path):
    config = make_config(tmp_path)
    assert broker.start() == broker.pid()  # a second start finds the running broker
    created = ensure_topics(broker.client, pipeline_topics(config))
    assert sorted(created) == sorted(t.name for t in config.kafka.topics.all())
    assert ensure_topics(broker.client, pipeline_topics(config)) == []
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([config.kafka.topics.raw.name])}
    finally:
        admin.close()
    assert described == {config.kafka.topics.raw.name: config.kafka.topics.raw.partitions}


def test_any_client_can_write_and_read(config):
    topic = config.kafka.topics.results.name
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
    producer.send(topic, key=b"r-1", value=b'{"ok": true}').get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=config.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [b'{"ok": true}']


def test_a_second_broker_starts_and_stops_by_its_pid(tmp_path):
    config = make_config(tmp_path, port=19192)
    second = LocalBroker.from_config(config)
    pid = second.start()
    try:
        assert second.pid() == pid and second.answers()
    finally:
        assert second.stop()
    assert second.pid() is None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 19192)) != 0
