"""The recorder holds each record once, whatever the topic they read holds twice.

A job killed between its Kafka write and its checkpoint sends its last batch again, and a recorder
killed between its Delta commit and its checkpoint runs its last batch again. Both happen here for
real: the topic gets re-sent copies, and the recorder's last checkpoint commit is removed, as a
kill -9 at that moment leaves it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from jobs import record
from tests.integration.kafka_io import produce

EVENT_TIME = "2026-12-01T10:00:00.000Z"


def score(request_id: str, model: str, scored_at: str, value: float) -> str:
    return json.dumps(
        {
            "request_id": request_id,
            "model": model,
            "registered_model": "fraud",
            "model_version": "1",
            "role": "champion",
            "score": value,
            "label": int(value > 0.5),
            "error": None,
            "scored_at": scored_at,
            "subject": "s",
            "event_time": EVENT_TIME,
            "policy": {"strategy": "champion", "deadline_ms": 500},
        }
    )


def record_scores(spark, config) -> None:
    """Run the recorder over what the topics hold, then stop it."""
    query = record.build(spark, config)
    try:
        query.processAllAvailable()
    finally:
        query.stop()


def table_rows(spark, config) -> dict[tuple[str, str], tuple]:
    rows = spark.read.format("delta").load(config.table("scores")).collect()
    keys = [(r.request_id, r.model) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicate rows: {sorted(keys)}"
    return {(r.request_id, r.model): (r.score, r.scored_at.isoformat()) for r in rows}


def test_re_sent_records_are_recorded_once_and_the_first_copy_is_kept(spark, config):
    topic = config.kafka.topics.scores.name
    produce(
        config.kafka.bootstrap_servers,
        topic,
        [
            score("r1", "champion", "2026-12-01T10:00:00.200Z", 0.1),
            score("r1", "champion", "2026-12-01T10:00:00.900Z", 0.9),  # re-sent within the same batch
            score("r1", "challenger", "2026-12-01T10:00:00.300Z", 0.3),
            score("r2", "champion", "2026-12-01T10:00:00.400Z", 0.4),
        ],
    )
    record_scores(spark, config)
    # A model job killed after its Kafka write sends its batch again, scored again later.
    produce(
        config.kafka.bootstrap_servers,
        topic,
        [
            score("r2", "champion", "2026-12-01T10:00:01.400Z", 0.8),
            score("r3", "champion", "2026-12-01T10:00:01.500Z", 0.5),
        ],
    )
    record_scores(spark, config)

    rows = table_rows(spark, config)
    assert {key: value for key, (value, _) in rows.items()} == {
        ("r1", "champion"): 0.1,
        ("r1", "challenger"): 0.3,
        ("r2", "champion"): 0.4,
        ("r3", "champion"): 0.5,
    }


def test_a_batch_run_again_after_its_delta_commit_inserts_nothing_twice(spark, config):
    topic = config.kafka.topics.scores.name
    produce(
        config.kafka.bootstrap_servers,
        topic,
        [score(f"r{i}", "champion", "2026-12-01T10:00:00.500Z", i / 10) for i in range(5)],
    )
    record_scores(spark, config)
    before = table_rows(spark, config)
    assert len(before) == 5

    # Killed between the Delta commit and the checkpoint commit: the offsets are logged, the
    # commit is not, so the batch runs again on restart.
    commits = Path(config.checkpoint(record.QUERY)) / "commits"
    last = max((p for p in commits.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    last.unlink()
    (commits / f".{last.name}.crc").unlink(missing_ok=True)
    record_scores(spark, config)

    assert last.exists()  # the batch ran again, and committed this time
    assert table_rows(spark, config) == before


def unkeyed(value: float) -> str:
    """A score record without a model: its key is incomplete, so it is appended, not merged."""
    return json.dumps({**json.loads(score("r-unkeyed", "x", "2026-12-01T10:00:00.300Z", value)), "model": None})


def test_a_recorder_reset_as_the_docs_say_records_what_comes_after(spark, config):
    """docs/operations.md, "Resetting a job safely": stop it, remove its checkpoint, start it. Its
    batch ids start at 0 again; rows appended once per batch (those without a whole key) must not
    be taken for the batches of the old checkpoint."""
    topic = config.kafka.topics.scores.name
    produce(
        config.kafka.bootstrap_servers, topic, [score("r1", "champion", "2026-12-01T10:00:00.200Z", 0.1), unkeyed(0.2)]
    )
    record_scores(spark, config)
    checkpoint = Path(config.checkpoint(record.QUERY))
    assert (checkpoint / "commits" / "0").exists()
    shutil.rmtree(checkpoint)

    produce(
        config.kafka.bootstrap_servers, topic, [score("r2", "champion", "2026-12-01T10:00:01.200Z", 0.7), unkeyed(0.8)]
    )
    record_scores(spark, config)

    rows = spark.read.format("delta").load(config.table("scores")).collect()
    keyed = sorted((r.request_id, r.score) for r in rows if r.model is not None)
    assert keyed == [("r1", 0.1), ("r2", 0.7)]  # re-read after the reset, recorded once
    # Rows without a key cannot be matched: re-read after the reset, they are appended again.
    assert sorted(r.score for r in rows if r.model is None) == [0.2, 0.2, 0.8]
