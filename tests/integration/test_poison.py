"""A request that crashes the model's Python worker does not stop the model's job: it gets a score
record with the error, the rest of its micro-batch is scored, and so is everything after it."""

from __future__ import annotations

import json

from jobs import featurize, score
from models.crashes import CRASHED
from rdv.config import load_config
from rdv.operations.model_configs import add_model_config
from tests.fixtures.models.faulty import POISON_KM
from tests.fixtures.registry import register_code_model
from tests.integration.helpers import fresh_events, stop_all, wait_for
from tests.integration.kafka_io import consume, produce


def test_a_request_that_crashes_the_python_worker_gets_an_error_record_and_the_job_goes_on(spark, config, registry):
    version = register_code_model(registry, "faulty-crash", "faulty.py", {"fault": "crash"})
    add_model_config(config, "crash", f"models:/faulty-crash/{version}", role="challenger")
    config = load_config(config.conf_dir)
    bootstrap, topics = config.kafka.bootstrap_servers, config.kafka.topics
    events = [json.loads(e) for e in fresh_events(12, seed=5)]
    events[7]["distance_km"] = POISON_KM
    poison = events[7]["request_id"]
    ids = [e["request_id"] for e in events]
    produce(bootstrap, topics.raw.name, [json.dumps(e) for e in events])

    def scored(wanted: list[str]) -> dict[str, dict]:
        return {
            s["request_id"]: s
            for s in consume(bootstrap, topics.scores.name, idle_ms=1000)
            if s["request_id"] in wanted
        }

    queries = featurize.build_all(spark, config)
    model_job = score.build(spark, config, "crash")
    try:
        scores = wait_for(
            lambda: scored(ids), lambda s: len(s) == len(ids), "a record per request of the crashing batch"
        )
        assert model_job.isActive
        # And the next requests, in a micro-batch of their own, are scored as usual.
        later = fresh_events(3, seed=6)
        produce(bootstrap, topics.raw.name, later)
        later_ids = [json.loads(e)["request_id"] for e in later]
        after = wait_for(lambda: scored(later_ids), lambda s: len(s) == len(later_ids), "scores of the next requests")
        assert model_job.isActive
    finally:
        stop_all([*queries, model_job])
    assert set(scores) == set(ids)
    # Kafka records leave out null fields: a record without a score has no "score".
    assert scores[poison].get("error") == CRASHED and scores[poison].get("score") is None
    assert all(s.get("error") is None and s["score"] is not None for i, s in scores.items() if i != poison)
    assert all(s.get("error") is None and s["score"] is not None for s in after.values())
