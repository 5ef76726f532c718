"""Helpers of the integration tests: fresh events, and waits that fail naming what they waited for."""

from __future__ import annotations

import json
import time

from pyspark.errors import AnalysisException

from rdv.demo.generator import generate_events, raw_json
from rdv.demo.replay import now_iso


def fresh_events(n: int, seed: int) -> list[str]:
    """n generated raw events stamped now, as a producer would send them."""
    messages = []
    for message in raw_json(generate_events(n, seed=seed)):
        record = json.loads(message)
        record["event_time"] = now_iso()
        messages.append(json.dumps(record))
    return messages


def wait_for(probe, done, what: str, timeout_s: float = 240.0):
    """Poll probe() until done(value) holds, and return that value; fail, naming `what` and the
    last value, if it does not within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}; last seen: {str(value)[:500]}")
        time.sleep(2)


def delta_count(spark, path: str) -> int:
    try:
        return spark.read.format("delta").load(path).count()
    except AnalysisException:
        return 0


def stop_all(queries):
    for query in queries:
        query.stop()
