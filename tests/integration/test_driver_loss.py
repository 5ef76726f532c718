"""A job run from plain Python (`rdv up` without --separate) whose Spark driver dies under it: the JVM
is the job's child there, and a Python process that outlived it would never be started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from jobs import featurize
from rdv.operations import runner
from rdv.operations.supervisor import Job, read_state, write_plan
from tests.helpers import eventually


def jvm_of(pid: int) -> int:
    children = subprocess.run(["pgrep", "-P", str(pid), "java"], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children
    return int(children[0])


def test_a_job_whose_driver_jvm_is_killed_exits_and_the_supervisor_starts_it_again(config):
    files = runner.run_files(config)
    jobs = [Job("features", [sys.executable, "-m", "jobs.featurize", *config.conf_args], featurize.QUERIES)]
    write_plan(files, jobs)
    supervisor = runner.start_supervisor(config)
    try:
        first = runner.wait_running(config, jobs, timeout_s=240, echo=lambda *_: None)["features"]
        os.kill(jvm_of(first), signal.SIGKILL)
        state = eventually(lambda: (s := read_state(files)["features"])["last_exit"] is not None and s, 60, poll_s=0.5)
        assert state["last_exit"] == 1
        assert "lost its Spark driver" in files.log("features").read_text(errors="replace")
        again = eventually(
            lambda: (s := read_state(files)["features"])["running"] and s["restarts"] == 1 and s["pid"], 60, poll_s=0.5
        )
        assert again != first
        eventually(
            lambda: all(
                (q := runner.query_states(config).get(name, {})).get("pgid") == again
                and q.get("state") in ("started", "running")
                for name in featurize.QUERIES
            ),
            240,
            poll_s=1,
        )
    finally:
        runner.down(config, stop_broker=False, echo=lambda *_: None)
    assert supervisor.wait(timeout=60) is not None
