"""The supervisor's pure parts: the backoff, how a job's state reads in `rdv status`, a failed job's log tail."""

from __future__ import annotations

import json
import subprocess
import time

from rdv.config import SupervisorConfig, load_config
from rdv.operations.runner import describe_job, plan, restarts_text, run_files, status_rows
from rdv.operations.supervisor import exit_text, log_tail
from tests.helpers import REPO, make_config


def test_the_backoff_doubles_with_each_failure_in_a_row_up_to_its_cap():
    settings = SupervisorConfig(backoff="2 seconds", max_backoff="10 seconds")
    assert [settings.backoff_s(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_exits_read_as_codes_or_signals():
    assert exit_text(1) == "exit code 1"
    assert exit_text(-9) == "signal 9 (SIGKILL)"
    assert exit_text(-15) == "signal 15 (SIGTERM)"


def test_a_job_reads_as_running_or_dead_with_its_restarts():
    assert describe_job({"pid": 42, "running": True, "restarts": 0, "last_exit": None}) == "running, pid 42"
    restarted = {
        "pid": 43,
        "running": True,
        "restarts": 1,
        "last_exit": -9,
        "last_exit_at": "2026-12-02T05:00:00+00:00",
    }
    assert describe_job(restarted) == (
        "running, pid 43; 1 restart(s), last exit signal 9 (SIGKILL) at 2026-12-02T05:00:00+00:00"
    )
    dead = {**restarted, "running": False, "pid": None, "next_start_at": time.time() + 30.4}
    assert describe_job(dead).startswith("dead, starting again in 30 s; 1 restart(s)")
    assert restarts_text({"restarts": 0, "last_exit": None}) == ""
    failed = {**dead, "next_start_at": None, "failed": True, "failures_in_window": 5}
    assert describe_job(failed).startswith(
        "failed: 5 failures within supervisor.failure_window, not started again; 1 restart(s)"
    )


def test_a_failed_jobs_log_tail_is_its_last_lines_that_say_something(tmp_path):
    log = tmp_path / "job.log"
    assert log_tail(log) == []  # no log yet
    log.write_text("".join(f"line {n}\n" for n in range(100_000)) + "\n  \nthe end\n")
    assert log_tail(log, 3) == ["line 99998", "line 99999", "the end"]


def test_spark_submit_jobs_take_their_whole_heap_at_start_only_when_asked():
    # The shipped conf's own Java options (the JIT's) are set apart, so that only the heap's differ.
    shipped = load_config(REPO / "conf")
    spark = shipped.spark.model_copy(update={"conf": {}})
    config = shipped.model_copy(update={"spark": spark})
    fixed = config.model_copy(update={"spark": spark.model_copy(update={"heap_at_start": True})})
    assert all("--driver-java-options" not in job.command for job in plan(config, [], separate=True))
    for job in plan(fixed, [], separate=True):
        options = job.command[job.command.index("--driver-java-options") + 1]
        memory = job.command[job.command.index("--driver-memory") + 1]
        assert options == f"-Xms{memory} -XX:+AlwaysPreTouch"


def test_spark_submit_jobs_get_spark_conf_on_their_command_line_with_the_java_options_merged():
    config = load_config(REPO / "conf")
    spark = config.spark.model_copy(
        update={
            "heap_at_start": True,
            "conf": {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1", "spark.sql.shuffle.partitions": "4"},
        }
    )
    for job in plan(config.model_copy(update={"spark": spark}), ["champion"], separate=True):
        memory = job.command[job.command.index("--driver-memory") + 1]
        assert job.command.count("--driver-java-options") == 1
        options = job.command[job.command.index("--driver-java-options") + 1]
        assert options == f"-Xms{memory} -XX:+AlwaysPreTouch -XX:TieredStopAtLevel=1"
        settings = [job.command[i + 1] for i, arg in enumerate(job.command) if arg == "--conf"]
        assert "spark.sql.shuffle.partitions=4" in settings
        assert not any(s.startswith("spark.driver.extraJavaOptions") for s in settings)


def test_a_query_whose_process_is_gone_reads_as_gone_and_not_ready(tmp_path):
    """A job killed with SIGKILL, or a machine that went down, leaves progress files that say
    running: `rdv status` must not show such a query as running and ready."""
    config = make_config(tmp_path)
    progress = run_files(config).progress
    progress.mkdir(parents=True)
    # Each a job as the supervisor starts one: in a session of its own, its pid its group id.
    dead = subprocess.Popen(["true"], start_new_session=True)
    dead.wait()
    live = subprocess.Popen(["sleep", "60"], start_new_session=True)
    report = {"batchId": 7, "ready": True, "durationMs": {"triggerExecution": 12}, "timestamp": "2026-12-04T14:09:09Z"}
    (progress / "features.json").write_text(json.dumps({**report, "state": "running", "pgid": dead.pid}))
    (progress / "rendezvous.json").write_text(json.dumps({**report, "state": "running", "pgid": live.pid}))
    (progress / "record.json").write_text(json.dumps({**report, "state": "stopped", "pgid": dead.pid}))
    try:
        rows = {r["query"]: (r["state"], r["ready"]) for r in status_rows(config)}
    finally:
        live.kill()
        live.wait()
    assert rows == {"features": ("gone", False), "rendezvous": ("running", True), "record": ("stopped", True)}
