"""The supervisor behind `rdv up`: it runs the planned jobs as processes of their own, starts a job
that died again after a backoff, and stops every job on SIGTERM or Ctrl-C.

`rdv` and the supervisor share files under var/run and nothing else, so that either can die
without taking the other with it:

- plan.json: the jobs that should run. `rdv up` writes it and `rdv model start|stop` edits it;
  the supervisor reads it again every second, starting what is new and stopping what is gone.
- supervisor.json: each job's pid, restarts, last exit and next start, written by the supervisor.
- jobs/<name>.pid: each job's pid, which is also its process group. With these files `rdv down`
  can stop a job even when the supervisor itself was killed.
- supervisor.pid.

A job started again resumes from its checkpoints (docs/operations.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rdv import profiles
from rdv.config import ConfigError, SupervisorConfig, load_config
from rdv.durations import duration_ms
from rdv.operations.processes import kill_group, terminate


@dataclass(frozen=True)
class Job:
    name: str
    command: list[str]
    queries: tuple[str, ...]
    nice: int = 0  # added to the job's CPU niceness: the recording jobs yield the cores to the answers


@dataclass(frozen=True)
class RunFiles:
    var: Path

    @property
    def run(self) -> Path:
        return self.var / "run"

    @property
    def jobs(self) -> Path:
        return self.run / "jobs"

    @property
    def progress(self) -> Path:
        return self.run / "progress"

    @property
    def plan(self) -> Path:
        return self.run / "plan.json"

    @property
    def state(self) -> Path:
        return self.run / "supervisor.json"

    @property
    def pid(self) -> Path:
        return self.run / "supervisor.pid"

    @property
    def logs(self) -> Path:
        return self.var / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.jobs / f"{name}.pid"


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)  # a reader never sees half a file


def write_plan(files: RunFiles, jobs: list[Job]) -> None:
    _write_json(files.plan, [asdict(job) for job in jobs])


def read_plan(files: RunFiles) -> list[Job]:
    try:
        entries = json.loads(files.plan.read_text())
    except FileNotFoundError:
        return []
    return [Job(e["name"], e["command"], tuple(e["queries"]), e.get("nice", 0)) for e in entries]


def read_state(files: RunFiles) -> dict[str, dict]:
    """Job name -> what the supervisor last wrote about it (empty before its first write)."""
    try:
        return json.loads(files.state.read_text())["jobs"]
    except (FileNotFoundError, ValueError, KeyError):
        return {}


AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int) -> None:
    """Run this process, in a session of its own, `nice` steps below the others. With Linux's
    autogroup scheduling (on by default in most distributions), the kernel shares the CPU between
    sessions first and a process's own nice counts only inside its session: each job has a
    session of its own, so without its session's nice the recording's nice 10 changed nothing
    against the latency path (bench/README.md). Raising either needs no privilege."""
    os.nice(nice)
    if AUTOGROUP.exists():
        AUTOGROUP.write_text(str(nice))


def launch(files: RunFiles, job: Job, cwd: Path) -> subprocess.Popen:
    """Start a job in a session of its own, its output appended to its log, its pid in its file."""
    files.jobs.mkdir(parents=True, exist_ok=True)
    files.logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    nice = job.nice
    with open(files.log(job.name), "ab") as log:
        process = subprocess.Popen(
            job.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=(lambda: lower_priority(nice)) if nice else None,
        )
    files.pid_file(job.name).write_text(str(process.pid))
    return process


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# The lines of a failed job's log that `rdv status` shows.
LOG_TAIL_LINES = 10


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of a log, read from its end (a job's log grows over its restarts)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(log.tell() - 64 * 1024, 0))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


class _Run:
    """One planned job and what happened to it so far."""

    def __init__(self, job: Job):
        self.job = job
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0  # monotonic
        self.restarts = 0
        self.failures = 0  # in a row
        self.failed_at: list[float] = []  # monotonic, within the failure window
        self.failed = False  # given up on: not started again
        self.log_tail: list[str] = []
        self.last_exit: int | None = None
        self.last_exit_at: str | None = None
        self.next_start = 0.0  # monotonic
        self.stopping_since: float | None = None


class Supervisor:
    def __init__(self, files: RunFiles, settings: SupervisorConfig, cwd: Path, echo=print):
        self.files, self.settings, self.cwd, self.echo = files, settings, cwd, echo
        self.runs: dict[str, _Run] = {}
        self.stopping = threading.Event()
        self.stop_timeout_s = duration_ms(settings.stop_timeout) / 1000

    def run(self) -> None:
        """Reconcile once a second until SIGTERM or SIGINT, then stop every job."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        self.files.pid.parent.mkdir(parents=True, exist_ok=True)
        self.files.pid.write_text(str(os.getpid()))
        self.echo(f"supervisor: running, pid {os.getpid()}")
        try:
            while not self.stopping.is_set():
                self.reconcile()
                self.stopping.wait(1.0)
        finally:
            self.stop_all()
            self._write_state()
            self.files.pid.unlink(missing_ok=True)
            self.echo("supervisor: stopped")

    def reconcile(self) -> None:
        planned = {job.name: job for job in read_plan(self.files)}
        for name, run in list(self.runs.items()):
            if name not in planned:
                self._retire(run)
        now = time.monotonic()
        for name, job in planned.items():
            run = self.runs.setdefault(name, _Run(job))
            if run.stopping_since is not None:  # taken out and planned again: started once it has stopped
                if run.process is not None and run.process.poll() is None:
                    continue
                run.process, run.stopping_since = None, None
            if run.process is not None and (code := run.process.poll()) is not None:
                self._died(run, code, now)
            if run.process is None and not run.failed and now >= run.next_start:
                self._start(run)
        self._write_state()

    def _start(self, run: _Run) -> None:
        if run.last_exit is not None:
            run.restarts += 1
        run.process = launch(self.files, run.job, self.cwd)
        run.started_at = time.monotonic()
        again = f" again (restart {run.restarts})" if run.restarts else ""
        self.echo(f"{run.job.name}: started{again}, pid {run.process.pid}, log {self.files.log(run.job.name)}")

    def _died(self, run: _Run, code: int, now: float) -> None:
        assert run.process is not None
        kill_group(run.process.pid)
        self.files.pid_file(run.job.name).unlink(missing_ok=True)
        run.failures = self.settings.failures_in_a_row(run.failures, now - run.started_at)
        run.last_exit, run.last_exit_at, run.process = code, _now_iso(), None
        window_s = duration_ms(self.settings.failure_window) / 1000
        run.failed_at = [at for at in run.failed_at if now - at < window_s] + [now]
        if len(run.failed_at) >= self.settings.max_failures:
            run.failed, run.log_tail = True, log_tail(self.files.log(run.job.name))
            self.echo(
                f"{run.job.name}: exited with {exit_text(code)}, its {len(run.failed_at)}th failure within "
                f"{self.settings.failure_window}: not starting it again (log {self.files.log(run.job.name)})"
            )
            return
        wait = self.settings.backoff_s(run.failures)
        run.next_start = now + wait
        self.echo(f"{run.job.name}: exited with {exit_text(code)}; starting again in {wait:.0f} s")

    def _retire(self, run: _Run) -> None:
        """Stop a job taken out of the plan: SIGTERM, then SIGKILL after the stop timeout."""
        if run.process is None or run.process.poll() is not None:
            if run.process is not None:
                kill_group(run.process.pid)
                self.echo(f"{run.job.name}: stopped")
            self.files.pid_file(run.job.name).unlink(missing_ok=True)
            del self.runs[run.job.name]
        elif run.stopping_since is None:
            run.stopping_since = time.monotonic()
            kill_group(run.process.pid, signal.SIGTERM)
            self.echo(f"{run.job.name}: stopping pid {run.process.pid}")
        elif time.monotonic() - run.stopping_since > self.stop_timeout_s:
            kill_group(run.process.pid)
            self.echo(f"{run.job.name}: killed pid {run.process.pid} after {self.stop_timeout_s:.0f} s")

    def stop_all(self) -> None:
        processes = {name: run.process for name, run in self.runs.items() if run.process is not None}
        started = {name: process.pid for name, process in processes.items()}
        for name, process in processes.items():
            if process.poll() is None:
                self.echo(f"{name}: stopping pid {process.pid}")
        for name in terminate(started, self.stop_timeout_s):
            self.echo(f"{name}: killed pid {started[name]} after {self.stop_timeout_s:.0f} s")
        for run in self.runs.values():
            if run.process is not None:
                run.process.wait()
                run.process = None
            self.files.pid_file(run.job.name).unlink(missing_ok=True)

    def _write_state(self) -> None:
        wall, now = time.time(), time.monotonic()
        jobs = {}
        for name, run in self.runs.items():
            running = run.process is not None and run.process.poll() is None
            jobs[name] = {
                "pid": run.process.pid if run.process is not None else None,
                "running": running,
                "restarts": run.restarts,
                "last_exit": run.last_exit,
                "last_exit_at": run.last_exit_at,
                "next_start_at": None
                if running or run.failed or self.stopping.is_set()
                else wall + max(run.next_start - now, 0),
                "failed": run.failed,
                "failures_in_window": len(run.failed_at),
                "log_tail": run.log_tail,
            }
        _write_json(self.files.state, {"pid": os.getpid(), "updated_at": _now_iso(), "jobs": jobs})


def exit_text(code: int | None) -> str:
    if code is None:
        return "no exit"
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m rdv.operations.supervisor",
        description="Run the jobs of var/run/plan.json, start a job that dies again after a backoff, and "
        "stop them all on SIGTERM or Ctrl-C. `rdv up` starts it; see docs/operations.md.",
    )
    profiles.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.conf, args.profile)
    except ConfigError as error:
        parser.exit(2, f"rdv supervisor: {error}\n")

    def echo(message: str) -> None:
        print(f"{_now_iso()} {message}", flush=True)

    Supervisor(RunFiles(config.path(config.paths.var)), config.supervisor, config.root, echo).run()


if __name__ == "__main__":
    main()
