"""A table that cannot be written while events flow, through the real broker, Spark and Delta: the
answers keep coming, the failed recording query alone is started again after a backoff, and once
the table is back it catches up with nothing lost or duplicated (docs/operations.md)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import threading

import pytest
from pyspark.sql import functions as F

from jobs import decide, featurize, recording, score
from jobs.record import QUERY as RECORD_QUERY
from rdv import commands
from rdv.jobrun import QueryKeeper
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import ensure_topics, pipeline_topics
from rdv.operations.runner import query_states
from rdv.progress import ProgressFiles
from tests.helpers import make_config
from tests.integration.helpers import delta_count, fresh_events, stop_all, wait_for
from tests.integration.kafka_io import consume, produce


@pytest.fixture
def config(tmp_path, broker, registry):
    """Short deadlines, so deferred answers come within seconds; restarts after 1 s, 4 s at most."""
    config = make_config(
        tmp_path,
        mlflow={"tracking_uri": registry},
        policy={"deadline_ms": 3000},
        rendezvous={"max_deadline_ms": 3000, "grace": "1 second"},
        spark={"table_trigger": "2 seconds"},
        supervisor={"backoff": "1 second", "max_backoff": "4 seconds"},
    )
    ensure_topics(client_settings(config), pipeline_topics(config))
    return config


def request_ids(events: list[str]) -> set[str]:
    return {json.loads(e)["request_id"] for e in events}


def test_an_unwritable_table_stops_neither_the_answers_nor_the_other_recorders_and_catches_up(spark, config):
    topics, bootstrap = config.kafka.topics, config.kafka.bootstrap_servers
    results_table = config.path(config.table("results"))
    answers = [featurize.build(spark, config), score.build(spark, config, "champion"), *decide.build(spark, config)]
    progress = ProgressFiles(config.path(config.paths.var) / "run" / "progress")
    keeper = QueryKeeper(spark, config, recording.build_all(spark, config), progress, recording.restart)
    stopping = threading.Event()
    keeping = threading.Thread(target=keeper.run, args=(stopping,), daemon=True)
    keeping.start()

    def answered() -> set[str]:
        return {r["request_id"] for r in consume(bootstrap, topics.results.name, idle_ms=1000)}

    def recorded(table: str) -> int:
        return delta_count(spark, config.table(table))

    try:
        before = fresh_events(20, seed=21)
        produce(bootstrap, topics.raw.name, before)
        wait_for(lambda: recorded("results"), lambda n: n >= len(before), "the first requests' results recorded")

        # The table's storage goes: a file where its directory was, so that no write, and no
        # re-creation of the table, can succeed.
        shutil.move(results_table, f"{results_table}.away")
        results_table.write_text("the storage is away")
        during = fresh_events(20, seed=22)
        produce(bootstrap, topics.raw.name, during)
        wait_for(answered, lambda found: found >= request_ids(before + during), "an answer to every request")
        state = wait_for(
            lambda: query_states(config).get(RECORD_QUERY, {}),
            lambda s: s.get("state") == "restarting",
            "the recorder failed and waiting to start again",
        )
        assert state["failures"] >= 1 and state["exception"]
        status = io.StringIO()
        with contextlib.redirect_stdout(status):
            commands.main(["--conf", str(config.conf_dir), "status"])
        assert f"query {RECORD_QUERY}: failed " in status.getvalue() and "its job starts it again at" in (
            status.getvalue()
        ), status.getvalue()
        # The decoy, in the same application, archives on.
        wait_for(lambda: recorded("archive"), lambda n: n >= len(before + during), "every request in the archive")
        assert keeping.is_alive()

        results_table.unlink()
        shutil.move(f"{results_table}.away", results_table)
        wait_for(
            lambda: recorded("results"),
            lambda n: n >= len(before + during),
            "the results table caught up",
            timeout_s=180,
        )
        wait_for(
            lambda: query_states(config).get(RECORD_QUERY, {}),
            lambda s: s.get("state") == "running",
            "the recorder running again",
        )
    finally:
        stopping.set()
        keeping.join(timeout=120)
        stop_all(answers)

    ids = request_ids(before + during)
    results = spark.read.format("delta").load(config.table("results"))
    assert results.count() == len(ids)
    assert {r.request_id for r in results.select("request_id").collect()} == ids
    scores = spark.read.format("delta").load(config.table("scores"))
    per_request = scores.groupBy("request_id").agg(F.count("*").alias("n"))
    assert {(r.request_id, r.n) for r in per_request.collect()} == {(i, 1) for i in ids}
