"""bench.attribution: a JVM's CPU per streaming query, from thread dumps and an event log."""

from __future__ import annotations

import json

import pytest

from bench.attribution import query_activity, thread_cpu, thread_groups

BEFORE = """"main" #1 prio=5 os_prio=0 cpu=1000.00ms elapsed=50.00s tid=0x1 nid=0x2 runnable
"C2 CompilerThread0" #7 daemon prio=9 os_prio=0 cpu=5000.00ms elapsed=50.00s tid=0x1 nid=0x3 waiting
"stream execution thread for features [id = 1, runId = 2]" #72 daemon prio=5 os_prio=0 cpu=2000.00ms elapsed=40s
"Executor task idle worker#81" #81 daemon prio=5 os_prio=0 cpu=600.00ms elapsed=40.00s tid=0x1 nid=0x4 waiting
"""
AFTER = """"main" #1 prio=5 os_prio=0 cpu=1100.00ms elapsed=110.00s tid=0x1 nid=0x2 runnable
"C2 CompilerThread0" #7 daemon prio=9 os_prio=0 cpu=5500.00ms elapsed=110.00s tid=0x1 nid=0x3 waiting
"stream execution thread for features [id = 1, runId = 2]" #72 daemon prio=5 os_prio=0 cpu=2700.00ms elapsed=100s
"Executor task launch worker for task 12.0 in stage 5.0 (TID 12)" #81 daemon prio=5 os_prio=0 cpu=900.00ms elapsed=100s
"kafka-producer-network-thread | producer-1" #90 daemon prio=5 os_prio=0 cpu=50.00ms elapsed=10s
"""


def test_thread_cpu_between_dumps_is_grouped_by_query_and_by_the_jvms_own_work():
    groups = thread_groups(thread_cpu(BEFORE), thread_cpu(AFTER))
    # The executor thread was renamed by its task: told apart by its id, it spent 0.3 s, not 0.9 s.
    assert groups == pytest.approx({"stream features": 0.7, "jit": 0.5, "executor tasks": 0.3, "other": 0.15})


def _line(event: dict) -> str:
    return json.dumps(event) + "\n"


def test_a_queries_tasks_and_micro_batches_in_the_window_are_its_own():
    lines = [
        _line(
            {
                "Event": "org.apache.spark.sql.streaming.StreamingQueryListener$QueryStartedEvent",
                "id": "q1",
                "runId": "r1",
                "name": "features",
                "timestamp": "2026-01-01T00:00:00.000Z",
            }
        ),
        _line(
            {
                "Event": "SparkListenerJobStart",
                "Job ID": 1,
                "Stage IDs": [3, 4],
                "Properties": {"sql.streaming.queryId": "q1"},
            }
        ),
        _line({"Event": "SparkListenerJobStart", "Job ID": 2, "Stage IDs": [5], "Properties": {}}),
        *[
            _line(
                {
                    "Event": "SparkListenerTaskEnd",
                    "Stage ID": stage,
                    "Task Info": {"Launch Time": launched},
                    "Task Metrics": {"Executor CPU Time": 200_000_000, "Executor Deserialize CPU Time": 50_000_000},
                }
            )
            for stage, launched in ((3, 1_000), (4, 2_000), (5, 2_000), (4, 99_000))
        ],
        *[
            _line(
                {
                    "Event": "org.apache.spark.sql.streaming.StreamingQueryListener$QueryProgressEvent",
                    "progress": {
                        "id": "q1",
                        "name": "features",
                        "timestamp": stamp,
                        "durationMs": {"addBatch": add, "walCommit": 10},
                        "sources": [{"numInputRows": rows}],
                    },
                }
            )
            for stamp, add, rows in (
                ("1970-01-01T00:00:01.000Z", 100, 4),
                ("1970-01-01T00:00:02.000Z", 300, 2),
                ("1970-01-01T00:01:40.000Z", 900, 1),
            )
        ],
    ]
    activity = query_activity(lines, start_ms=0, end_ms=60_000)
    assert set(activity) == {"features"}
    features = activity["features"]
    assert (features.batches, features.rows) == (2, 6)
    assert features.task_cpu_s == pytest.approx(0.5)  # two tasks of stages 3 and 4 in the window; stage 5 is no query's
    assert features.mean_phases() == {"addBatch": 200, "walCommit": 10}
