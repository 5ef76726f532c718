"""`rdv forget` and the jobs that read what it changes: the data-quality query reads `archive` as a
stream, and forget's deletes rewrite archive files. Started again after them, as
docs/data-quality.md says (`rdv down`, `rdv forget`, `rdv up`), it goes on past their commit."""

from __future__ import annotations

import json

from jobs import decoy, featurize
from rdv.kafka_security import client_settings
from rdv.operations.forget import forget
from rdv.operations.kafka_local import ensure_topics, pipeline_topics
from tests.helpers import make_config
from tests.integration.helpers import fresh_events, stop_all, wait_for
from tests.integration.kafka_io import produce


def validated_rows(spark, config) -> int:
    """Archive rows the data-quality query validated: each batch's row count, once per batch."""
    quality = spark.read.format("delta").load(config.table("data_quality"))
    return sum(row["rows"] for row in quality.select("batch_id", "rows").distinct().collect())


def run_until_validated(spark, config, events: list[str], validated: int) -> None:
    """Run the features job and the decoy on events until `validated` rows are validated in all,
    or fail naming the query that failed."""
    queries = [*featurize.build_all(spark, config), *decoy.build_all(spark, config)]
    try:
        produce(config.kafka.bootstrap_servers, config.kafka.topics.raw.name, events)
        wait_for(
            lambda: validated_rows(spark, config) if all(q.isActive for q in queries) else -1,
            lambda rows: rows >= validated or rows < 0,
            f"{validated} archive rows validated",
        )
        failed = [f"{q.name}: {q.exception()}" for q in queries if not q.isActive]
        assert not failed, failed
    finally:
        stop_all(queries)


def test_the_data_quality_query_goes_on_past_a_forget(spark, broker, registry, tmp_path):
    config = make_config(
        tmp_path,
        mlflow={"tracking_uri": registry},
        spark={"table_trigger": "2 seconds", "quality_trigger": "2 seconds"},
    )
    ensure_topics(client_settings(config), pipeline_topics(config))
    first = fresh_events(10, seed=11)
    run_until_validated(spark, config, first, 10)

    subject = json.loads(first[0])["card_id"]
    cards = [json.loads(event)["card_id"] for event in first]
    forgotten = forget(spark, config, subject)
    assert forgotten.deleted["archive"] == cards.count(subject)

    # The jobs started again on their checkpoints: the next events are archived and validated.
    run_until_validated(spark, config, fresh_events(5, seed=12), 15)
