"""A deadline shorter than the lateness the features job accepts, through the real broker: a
request that arrives late, with its own 200 ms deadline, while other traffic and the heartbeats
move the rendezvous's watermark, still gets exactly one answer (docs/rendezvous.md, "Deadlines
shorter than the lateness")."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import yaml
from kafka import KafkaProducer

from jobs import decide, featurize
from rdv.config import load_config
from rdv.demo.generator import generate_events, raw_json
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import ensure_topics, pipeline_topics
from tests.helpers import write_conf
from tests.integration.helpers import stop_all, wait_for
from tests.integration.kafka_io import consume

# Behind its arrival by almost limits.max_lateness (5 s), so the features job accepts it; its
# decision point, event_time + 200 ms + grace, is then already behind a watermark that a
# heartbeat of the last second has moved to (its time - transit).
LATE_BY_MS = 4_800
SHORT_DEADLINE_MS = 200


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_late_request_with_a_deadline_shorter_than_the_lateness_gets_exactly_one_answer(
    spark, tmp_path, broker, registry
):
    conf = write_conf(tmp_path, mlflow={"tracking_uri": registry})
    data = yaml.safe_load((conf / "pipeline.yaml").read_text())
    for topic in ("raw", "features", "heartbeats"):  # requests and heartbeats on two partitions each
        data["kafka"]["topics"][topic]["partitions"] = 2
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data))
    config = load_config(conf)
    ensure_topics(client_settings(config), pipeline_topics(config))
    topics = config.kafka.topics

    # No model runs: every answer is the default, at the request's decision point.
    queries = [featurize.build(spark, config), *decide.build(spark, config)]
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all", linger_ms=0)
    late, fresh = [], []
    try:
        for i, event in enumerate(raw_json(generate_events(120, seed=11))):
            record, now = json.loads(event), datetime.now(UTC)
            if i % 2:  # stamped as it is sent, with the shipped deadline: it moves the watermark
                record["event_time"] = stamp(now)
                fresh.append(record["request_id"])
            else:
                record["event_time"] = stamp(now - timedelta(milliseconds=LATE_BY_MS))
                record["policy"] = {"deadline_ms": SHORT_DEADLINE_MS}
                late.append(record["request_id"])
            # The record's Kafka timestamp, which the lateness is measured from, is the `now` its event
            # time was stamped against: kafka-python would take the time after its wait for the topic's
            # metadata, which made the first late request 5.0 s late on a loaded machine.
            producer.send(
                topics.raw.name,
                key=record["request_id"].encode(),
                value=json.dumps(record).encode(),
                timestamp_ms=int(now.timestamp() * 1000),
            )
            time.sleep(0.1)
        producer.flush()
        # The fresh requests, on the shipped 10 s deadline, are decided after every late one.
        results = wait_for(
            lambda: consume(config.kafka.bootstrap_servers, topics.results.name, idle_ms=1000),
            lambda found: {r["request_id"] for r in found} >= set(fresh),
            "an answer to every fresh request",
            timeout_s=180,
        )
    finally:
        producer.close()
        stop_all(queries)

    published = {r["request_id"] for r in consume(config.kafka.bootstrap_servers, topics.features.name, idle_ms=1000)}
    assert published >= set(late), "a late request was quarantined: the test's lateness is past limits.max_lateness"
    answers = Counter(r["request_id"] for r in results)
    unanswered = [i for i in late if answers[i] == 0]
    assert not unanswered, (
        f"{len(unanswered)} of {len(late)} late requests with a {SHORT_DEADLINE_MS} ms deadline got no answer"
    )
    assert all(answers[i] == 1 for i in late + fresh), {i: n for i, n in answers.items() if n != 1}
    for result in results:
        if result["request_id"] in late:
            assert (result["reason"], result["deadline_ms"], result.get("in_time")) == (
                "default",
                SHORT_DEADLINE_MS,
                None,
            )
