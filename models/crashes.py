"""Requests that crash a model's Python worker, found and answered with an error record.

A model that raises is contained inside the UDF (models/scoring.py). A request that kills the worker
process is another matter: a segfault in native code, an `os._exit`, the kernel's OOM killer. Its
task fails, then its micro-batch, and the batch fails again after every restart, so one poison
record would stop the model's job for good. So a batch whose scoring crashed a worker is scored
again in halves, down to the single requests that crash it. Each of those gets a score record with
the error, as a request the model raised on does. For k poison records among n that is about
2k log2(n) more Spark jobs, and only for the batches that have one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

# How Spark reports a Python worker that died under a task, in its JVM and Python errors.
_CRASH_MARKS = ("Python worker exited unexpectedly", "PYTHON_WORKER_EXITED_UNEXPECTEDLY", "crashed")
CRASHED = "crashed the Python worker"


def crashed_a_worker(error: Exception) -> bool:
    text = str(error)
    return any(mark in text for mark in _CRASH_MARKS[:2]) or ("Python worker" in text and _CRASH_MARKS[2] in text)


def publish_isolating_crashes(
    requests: DataFrame, publish_scores: Callable[[DataFrame], None], publish_failed: Callable[[DataFrame, str], None]
) -> list[str]:
    """publish_scores(requests); if a worker crashed under it, publish_scores on the halves that do
    not crash and publish_failed on each request that does. Returns those requests' ids."""
    try:
        publish_scores(requests)
        return []
    except Exception as error:  # noqa: BLE001 - a crash is told apart below; anything else is raised again
        if not crashed_a_worker(error):
            raise
    requests = requests.persist()
    try:
        ids = sorted(row.request_id for row in requests.select("request_id").collect())
        log.warning("a request of %d crashed the model's Python worker; scoring them in halves", len(ids))
        crashed = _bisect(requests, ids, publish_scores, publish_failed)
    finally:
        requests.unpersist()
    log.error(
        "%d request(s) crashed the model's Python worker, published with the error %r: %s",
        len(crashed),
        CRASHED,
        ", ".join(crashed),
    )
    return crashed


def _bisect(requests: DataFrame, ids: list[str], publish_scores, publish_failed) -> list[str]:
    if len(ids) == 1:
        publish_failed(requests.where(F.col("request_id") == ids[0]), CRASHED)
        return ids
    crashed = []
    for half in (ids[: len(ids) // 2], ids[len(ids) // 2 :]):
        part = requests.where(F.col("request_id").isin(half))
        try:
            publish_scores(part)
        except Exception as error:  # noqa: BLE001 - as above
            if not crashed_a_worker(error):
                raise
            crashed += _bisect(part, half, publish_scores, publish_failed)
    return crashed
