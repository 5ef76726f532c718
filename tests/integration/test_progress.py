"""Progress files of real streaming queries: the last report for `rdv status`, every report for the
benchmark, and the final state with the failure."""

from __future__ import annotations

import json
import os
import time

import pytest

from rdv.progress import ProgressFiles


def _rate_query(spark, tmp_path, name, process=None):
    stream = spark.readStream.format("rate").option("rowsPerSecond", 5).load()
    writer = (
        stream.writeStream.queryName(name)
        .option("checkpointLocation", str(tmp_path / name))
        .trigger(processingTime="200 milliseconds")
    )
    writer = writer.foreachBatch(process) if process else writer.format("noop")
    return writer.start()


def _wait(condition, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_every_report_is_kept_once_and_the_last_one_is_the_status(spark, tmp_path):
    files = ProgressFiles(tmp_path / "progress", tmp_path / "progress-log")
    query = _rate_query(spark, tmp_path, "progress_every_report")
    try:
        files.started([query])
        assert json.loads((tmp_path / "progress" / "progress_every_report.json").read_text())["state"] == "started"
        _wait(lambda: (query.lastProgress or {"batchId": 0})["batchId"] >= 2)
        files.update([query])
        # Several micro-batches between two polls: the ones in between come from the recent reports.
        _wait(lambda: query.lastProgress["batchId"] >= 8)
        files.update([query])
        files.update([query])  # nothing new: nothing written twice
    finally:
        query.stop()
    files.stopped([query])

    history = [json.loads(line) for line in (tmp_path / "progress-log" / "progress_every_report.jsonl").open()]
    batches = [report["batchId"] for report in history if report["numInputRows"] > 0]
    assert batches == list(range(batches[0], batches[-1] + 1)) and batches[-1] >= 8
    assert len({report["timestamp"] for report in history}) == len(history)
    last = json.loads((tmp_path / "progress" / "progress_every_report.json").read_text())
    assert (last["state"], last["exception"], last["pgid"]) == ("stopped", None, os.getpgid(0))
    assert last["batchId"] == history[-1]["batchId"]


def test_a_failed_query_is_recorded_with_its_error(spark, tmp_path):
    def fail_on_third(batch, batch_id):
        if batch_id == 2:
            raise ValueError("model exploded on batch 2")

    files = ProgressFiles(tmp_path / "progress")
    query = _rate_query(spark, tmp_path, "progress_failing", fail_on_third)
    with pytest.raises(Exception, match="model exploded"):
        query.awaitTermination(60)
    files.stopped([query])
    state = json.loads((tmp_path / "progress" / "progress_failing.json").read_text())
    assert state["state"] == "failed" and "model exploded on batch 2" in state["exception"]
    assert not (tmp_path / "progress-log").exists()
