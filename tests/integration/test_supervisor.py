"""The supervisor with real processes: plain Python programs stand in for the jobs, so that each
kill, exit and restart takes milliseconds, not a Spark start-up (tests/e2e/test_faults.py does it
with the real jobs)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdv import commands
from rdv.config import load_config
from rdv.operations import runner
from rdv.operations.model_configs import add_model_config, model_rows
from rdv.operations.processes import alive, terminate
from rdv.operations.supervisor import Job, read_state, write_plan
from tests.helpers import eventually, make_config

SETTINGS = {
    "backoff": "1 second",
    "max_backoff": "2 seconds",
    "healthy_after": "1 minute",
    "stop_timeout": "3 seconds",
    "max_failures": 100,
}
SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(0.1)"]
# Ignores SIGTERM, as a job stuck in a Delta commit would for a while.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(0.1)",
]


@pytest.fixture
def supervised(tmp_path):
    """A config whose plan holds a sleeper and a program that exits at once, and its running supervisor."""
    config = make_config(tmp_path, supervisor=SETTINGS)
    files = runner.run_files(config)
    write_plan(files, [Job("sleeper", SLEEPER, ()), Job("crasher", [sys.executable, "-c", "raise SystemExit(3)"], ())])
    supervisor = runner.start_supervisor(config)
    yield config, files
    runner.down(config, stop_broker=False, echo=lambda *_: None)
    assert supervisor.wait(timeout=30) is not None


def test_a_job_that_dies_is_started_again_with_a_growing_backoff(supervised):
    config, files = supervised
    state = eventually(lambda: (s := read_state(files)).get("crasher", {}).get("restarts", 0) >= 2 and s)
    crasher = state["crasher"]
    assert crasher["last_exit"] == 3 and crasher["last_exit_at"]
    assert "restart(s), last exit exit code 3 at" in runner.restarts_text(crasher)
    assert state["sleeper"]["running"] and state["sleeper"]["restarts"] == 0
    # Backoff 1 s, then 2 s (capped): three restarts take at least 1 + 2 + 2 s after the first exit.
    started = time.monotonic()
    eventually(lambda: read_state(files)["crasher"]["restarts"] >= 4, timeout_s=30)
    assert time.monotonic() - started >= 3.5

    sleeper = read_state(files)["sleeper"]["pid"]
    os.killpg(sleeper, signal.SIGKILL)
    state = eventually(lambda: (s := read_state(files)["sleeper"])["running"] and s["pid"] != sleeper and s)
    assert state["restarts"] == 1 and state["last_exit"] == -signal.SIGKILL
    assert runner.running_jobs(config)["sleeper"] == state["pid"]
    assert "signal 9 (SIGKILL)" in runner.describe_job(state)


def test_terminate_kills_only_what_ignores_sigterm_and_all_that_is_left_of_a_group():
    """The one stop of rdv/operations/processes.py that `rdv down`, the supervisor, the local broker and the
    tests' cluster use: SIGTERM, the timeout, then SIGKILL."""
    polite, stubborn = (subprocess.Popen(command, start_new_session=True) for command in (SLEEPER, STUBBORN))
    # A group whose leader is gone: a shell that left a sleeper behind, as a Python driver can
    # outlive spark-submit's JVM.
    orphaning = subprocess.Popen(
        ["sh", "-c", f"{subprocess.list2cmdline(SLEEPER)} & echo $!"],
        text=True,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    orphan = int(orphaning.stdout.readline())
    orphaning.wait()
    time.sleep(0.5)  # the stubborn one has set its handler
    started = time.monotonic()
    killed = terminate({"polite": polite.pid, "stubborn": stubborn.pid, "orphaning": orphaning.pid}, 2.0)
    assert killed == ["stubborn"]
    assert time.monotonic() - started >= 2.0
    assert polite.wait(timeout=5) == -signal.SIGTERM and stubborn.wait(timeout=5) == -signal.SIGKILL
    eventually(lambda: not alive(orphan), timeout_s=5)


def test_a_job_taken_out_of_the_plan_is_stopped_and_killed_if_it_ignores_sigterm(tmp_path):
    config = make_config(tmp_path, supervisor=SETTINGS)
    files = runner.run_files(config)
    write_plan(files, [Job("sleeper", SLEEPER, ()), Job("stubborn", STUBBORN, ())])
    supervisor = runner.start_supervisor(config)
    try:
        pids = eventually(lambda: len(jobs := runner.running_jobs(config)) == 2 and jobs)
        started = time.monotonic()
        assert runner.stop_job(config, "stubborn")
        assert not alive(pids["stubborn"])
        assert time.monotonic() - started >= 3  # it got the stop timeout, then SIGKILL
        assert runner.stop_job(config, "sleeper")
        assert not alive(pids["sleeper"]) and runner.running_jobs(config) == {}
        assert not runner.stop_job(config, "sleeper")  # not planned any more
        assert alive(supervisor.pid)
    finally:
        runner.down(config, stop_broker=False, echo=lambda *_: None)
    assert supervisor.wait(timeout=30) == 0


def test_a_model_job_whose_model_cannot_load_is_given_up_on_and_shown_as_failed(tmp_path, registry):
    """A fault that lasts: the model's version is not in the registry, so every start of its real
    job fails. After max_failures within failure_window the supervisor starts it no more, the other
    jobs keep running, and `rdv status` and `rdv model list` say so, with the end of its log."""
    config = make_config(
        tmp_path, models=(), mlflow={"tracking_uri": registry}, supervisor={**SETTINGS, "max_failures": 2}
    )
    add_model_config(config, "broken", "models:/fraud@challenger")
    # Gone from the registry after it was configured (add checks that the version exists).
    (config.conf_dir / "models" / "broken.yaml").write_text("uri: models:/fraud/999\nrole: challenger\n")
    config = load_config(config.conf_dir)
    files = runner.run_files(config)
    write_plan(files, [Job("sleeper", SLEEPER, ()), runner.model_job(config, "broken")])
    supervisor = runner.start_supervisor(config)
    try:
        state = eventually(
            lambda: (s := read_state(files).get("score-broken", {})).get("failed") and s, timeout_s=300, poll_s=1
        )
        assert (state["restarts"], state["failures_in_window"], state["running"]) == (1, 2, False)
        assert state["next_start_at"] is None
        assert any("999" in line for line in state["log_tail"]), state["log_tail"]
        # Longer than the longest backoff (2 s): a job still planned would have been started again.
        time.sleep(4)
        later = read_state(files)
        assert (later["score-broken"]["restarts"], later["score-broken"]["running"]) == (1, False)
        assert later["sleeper"]["running"] and later["sleeper"]["restarts"] == 0

        status = io.StringIO()
        with contextlib.redirect_stdout(status):
            commands.main(["--conf", str(config.conf_dir), "status"])
        assert "job score-broken: failed: 2 failures within supervisor.failure_window, not started again" in (
            status.getvalue()
        ), status.getvalue()
        assert f"  its log ({files.log('score-broken')}) ends:" in status.getvalue()
        [broken] = [row for row in model_rows(config) if row["model"] == "broken"]
        assert broken["running"].startswith("no, failed: 2 failures"), broken
        assert broken["log_tail"] == state["log_tail"]
    finally:
        runner.down(config, stop_broker=False, echo=lambda *_: None)
    assert supervisor.wait(timeout=30) == 0


def test_a_recording_job_runs_below_the_others_in_its_session_too(tmp_path):
    """Its own nice, and its session's: with autogroup scheduling, the kernel shares the CPU
    between sessions first, and each job is a session of its own."""
    config = make_config(tmp_path, supervisor=SETTINGS)
    write_plan(runner.run_files(config), [Job("sleeper", SLEEPER, ()), Job("recorder", SLEEPER, (), nice=10)])
    supervisor = runner.start_supervisor(config)
    try:
        pids = eventually(lambda: len(jobs := runner.running_jobs(config)) == 2 and jobs)
        own = {
            name: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) for name, pid in pids.items()
        }
        assert own["recorder"] - own["sleeper"] == 10, own
        groups = {name: Path(f"/proc/{pid}/autogroup") for name, pid in pids.items()}
        if all(group.exists() for group in groups.values()):
            assert groups["recorder"].read_text().split()[-1] == "10", groups["recorder"].read_text()
            assert groups["sleeper"].read_text().split()[-1] == "0", groups["sleeper"].read_text()
    finally:
        runner.down(config, stop_broker=False, echo=lambda *_: None)
    assert supervisor.wait(timeout=30) == 0


def test_sigterm_to_the_supervisor_stops_every_job(supervised):
    config, files = supervised
    pid = eventually(lambda: runner.running_jobs(config).get("sleeper"))
    os.kill(runner.supervisor_pid(config), signal.SIGTERM)
    eventually(lambda: runner.supervisor_pid(config) is None)
    assert not alive(pid)
    assert list(files.jobs.glob("*.pid")) == []
    assert not read_state(files)["sleeper"]["running"]


def test_down_stops_the_jobs_of_a_supervisor_that_was_killed(supervised):
    config, files = supervised
    pid = eventually(lambda: runner.running_jobs(config).get("sleeper"))
    os.kill(runner.supervisor_pid(config), signal.SIGKILL)
    eventually(lambda: runner.supervisor_pid(config) is None)
    assert alive(pid) and runner.job_states(config) == {}
    messages = []
    runner.down(config, stop_broker=False, echo=messages.append)
    assert not alive(pid)
    assert f"sleeper: stopping pid {pid}" in messages


def test_the_supervisor_refuses_a_bad_config_naming_the_field(tmp_path):
    config = make_config(tmp_path)
    pipeline = config.conf_dir / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text() + "\nsupervisor: {backoff: soon}\n")
    done = subprocess.run(
        [sys.executable, "-m", "rdv.operations.supervisor", "--conf", str(config.conf_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "pipeline.yaml" in done.stderr and "supervisor.backoff" in done.stderr
