"""Each model's CPU per 1,000 requests, measured by its job and put beside its gain by `rdv compare`
(models/cost.py, comparison/costs.py): the model queries in one application, against the real
broker, registry and Delta tables."""

from __future__ import annotations

import json
import time

import pytest
from pyspark.sql import functions as F

from comparison.compare import compare
from jobs import decide, featurize, record, score
from rdv.config import load_config
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import ensure_topics, pipeline_topics
from rdv.operations.model_configs import add_model_config
from tests.fixtures.registry import register_code_model
from tests.helpers import make_config
from tests.integration.helpers import fresh_events, stop_all, wait_for
from tests.integration.kafka_io import consume, produce

WAVES, PER_WAVE = 4, 30
# About 10 ms of Python arithmetic per row here (28 ns a round): 10 CPU s per 1,000 requests more than
# the champion, whose whole cost was 1.3.
SPIN_PER_ROW = 400_000


def test_a_model_made_costlier_shows_more_cpu_per_request_than_the_champion_in_the_same_run(
    spark, tmp_path, broker, registry
):
    config = make_config(
        tmp_path,
        models=("champion",),
        mlflow={"tracking_uri": registry},
        policy={"deadline_ms": 3000},
        rendezvous={"max_deadline_ms": 3000, "grace": "1 second"},
        compare={"cost_sample": "1 second"},
    )
    ensure_topics(client_settings(config), pipeline_topics(config))
    version = register_code_model(
        registry, "faulty-costly", "faulty.py", {"fault": "costly", "spin_per_row": SPIN_PER_ROW}
    )
    add_model_config(config, "costly", f"models:/faulty-costly/{version}", role="challenger")
    config = load_config(config.conf_dir)
    queries = [
        featurize.build(spark, config),
        score.build(spark, config, "champion"),
        score.build(spark, config, "costly"),
        *decide.build(spark, config),
        record.build(spark, config),
    ]
    try:
        # In waves: a job samples its cost before a micro-batch, once compare.cost_sample has passed,
        # so each wave's first micro-batch samples the wave before it.
        for wave in range(WAVES):
            produce(config.kafka.bootstrap_servers, config.kafka.topics.raw.name, fresh_events(PER_WAVE, seed=wave))
            wait_for(
                lambda: consume(config.kafka.bootstrap_servers, config.kafka.topics.scores.name, idle_ms=500),
                lambda scores, wave=wave: len(scores) >= 2 * PER_WAVE * (wave + 1),
                f"both models' scores of wave {wave + 1}",
            )
            time.sleep(1.5)
        for query in queries:  # the recorder catches up with rdv.results and rdv.scores
            if query.name == record.QUERY:
                query.processAllAvailable()
    finally:
        stop_all(queries)

    costs = spark.read.format("delta").load(config.table("costs"))
    sampled = {
        r.model: r
        for r in costs.groupBy("model")
        .agg(
            (F.sum("cpu_s") * 1000 / F.sum("requests")).alias("cpu"),
            F.sum("requests").alias("requests"),
            F.array_join(F.collect_set("measured_by"), ",").alias("by"),
        )
        .collect()
    }
    # The first micro-batch is not counted (models/cost.py), and the last wave is sampled by a
    # micro-batch that never comes: the waves between are.
    for model in ("champion", "costly"):
        assert 2 * PER_WAVE <= sampled[model].requests < WAVES * PER_WAVE and sampled[model].by == "tasks", sampled
    assert sampled["costly"].cpu > 2 * sampled["champion"].cpu + 5, sampled

    compare(spark, config, echo=lambda line: None)
    comparison = spark.read.format("delta").load(config.table("comparison"))
    windows = {
        r.model: r
        for r in comparison.groupBy("model")
        .agg(
            F.count("cpu_s_per_1000_requests").alias("with_cost"),
            F.min("cpu_s_per_1000_requests").alias("lowest"),
            F.max("cpu_s_per_1000_requests").alias("highest"),
            F.collect_set("cost_measured_by").alias("by"),
        )
        .collect()
    }
    assert windows["served"].with_cost == 0  # an answer is no model's cost
    for model in ("champion", "costly"):
        assert windows[model].with_cost > 0 and windows[model].by == ["tasks"], windows
    # Every window's figure is a mean of the samples' that overlap it.
    assert windows["costly"].lowest > windows["champion"].highest, windows
    (test,) = spark.read.format("delta").load(config.table("comparison_tests")).collect()
    assert test.challenger == "costly" and test.labelled == 0  # no label: the cost is there all the same
    assert test.champion_cpu_s_per_1000 == pytest.approx(sampled["champion"].cpu)
    assert test.challenger_cpu_s_per_1000 == pytest.approx(sampled["costly"].cpu)
    print(json.dumps({m: round(r.cpu, 2) for m, r in sampled.items()}))
