"""Starting, watching and stopping the pipeline's jobs as background processes.

`up` starts the local broker (local profile) and then either one Spark application with every
query (the default) or one spark-submit per job (separate, as production runs them). Each
process has a pid file under var/run/jobs and a log under var/logs; each query reports its
progress to var/run/progress (see rdv.progress), which is what `status` shows.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jobs import decide, decoy, featurize
from rdv.config import PipelineConfig
from rdv.kafka_local import LocalBroker, ensure_topics, pipeline_topics
from rdv.spark import local_jars

BROKER_STARTED = "broker.started-by-up"
JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"
JOB_FILES = {"features": "featurize.py", "decoy": "decoy.py", "rendezvous": "decide.py"}


@dataclass(frozen=True)
class Job:
    name: str
    command: list[str]
    queries: tuple[str, ...]


def _dirs(config: PipelineConfig) -> tuple[Path, Path, Path]:
    var = config.path(config.paths.var)
    return var / "run" / "jobs", var / "run" / "progress", var / "logs"


def plan(config: PipelineConfig, models: list[str], separate: bool) -> list[Job]:
    """The processes that run the given models and every other job."""
    conf = ["--conf", str(config.conf_dir)]
    queries = (*featurize.QUERIES, *[f"score-{m}" for m in models], *decoy.QUERIES, *decide.QUERIES)
    if not separate:
        return [Job("pipeline", [sys.executable, "-m", "jobs.pipeline", *conf, "--models", *models], queries)]
    submit = _submit_command(config)
    jobs = [Job("features", [*submit, str(JOBS_DIR / JOB_FILES["features"]), *conf], featurize.QUERIES),
            Job("decoy", [*submit, str(JOBS_DIR / JOB_FILES["decoy"]), *conf], decoy.QUERIES)]
    jobs += [model_job(config, m) for m in models]
    jobs.append(Job("rendezvous", [*submit, str(JOBS_DIR / JOB_FILES["rendezvous"]), *conf], decide.QUERIES))
    return jobs


def _submit_command(config: PipelineConfig, memory: str = "1g", python_memory: str | None = None) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master", config.spark.master,
        "--jars", ",".join(local_jars(config)),
        "--driver-memory", memory,
        "--executor-memory", memory,
    ]
    if python_memory:
        command += ["--conf", f"spark.executor.pyspark.memory={python_memory}"]
    return command


def model_job(config: PipelineConfig, model: str) -> Job:
    """The spark-submit process of one model job, with the model's own memory settings."""
    settings = config.model(model).spark
    command = [*_submit_command(config, settings.memory, settings.python_memory), str(JOBS_DIR / "score.py"),
               "--conf", str(config.conf_dir), "--model", model]
    return Job(f"score-{model}", command, (f"score-{model}",))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def running_jobs(config: PipelineConfig) -> dict[str, int]:
    """Job name -> pid of every job process started by `up` that is still alive."""
    pid_dir, _, _ = _dirs(config)
    jobs = {}
    for pid_file in sorted(pid_dir.glob("*.pid")):
        pid = int(pid_file.read_text())
        if alive(pid):
            jobs[pid_file.stem] = pid
        else:
            pid_file.unlink()
    return jobs


def query_states(config: PipelineConfig) -> dict[str, dict]:
    _, progress_dir, _ = _dirs(config)
    states = {}
    for path in sorted(progress_dir.glob("*.json")):
        try:
            states[path.stem] = json.loads(path.read_text())
        except ValueError:
            continue  # being rewritten
    return states


def up(config: PipelineConfig, models: list[str], separate: bool = False, timeout_s: float = 300.0,
       echo=print) -> dict[str, int]:
    """Start the broker (local profile) and every job; return once every query is running."""
    if running := running_jobs(config):
        raise RuntimeError(f"already running: {', '.join(running)} (run `rdv down` first)")
    pid_dir, progress_dir, _ = _dirs(config)
    pid_dir.mkdir(parents=True, exist_ok=True)
    if config.profile == "local":
        broker = LocalBroker.from_config(config)
        if broker.pid() is None:
            echo(f"broker: starting on {broker.bootstrap}")
            broker.start()
            (pid_dir / BROKER_STARTED).touch()  # so that `down` stops it again
        else:
            echo(f"broker: running on {broker.bootstrap}")
    ensure_topics(config.kafka.bootstrap_servers, pipeline_topics(config))
    progress_dir.mkdir(parents=True, exist_ok=True)
    for stale in progress_dir.glob("*.json"):
        stale.unlink()
    jobs = plan(config, models, separate)
    pids = {job.name: launch(config, job, echo) for job in jobs}
    wait_running(config, jobs, timeout_s, echo)
    return pids


def launch(config: PipelineConfig, job: Job, echo) -> int:
    pid_dir, progress_dir, log_dir = _dirs(config)
    for directory in (pid_dir, progress_dir, log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    with open(log_dir / f"{job.name}.log", "ab") as log:
        process = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=config.root, env=env, start_new_session=True)
    (pid_dir / f"{job.name}.pid").write_text(str(process.pid))
    echo(f"{job.name}: started, pid {process.pid}, log {log_dir / (job.name + '.log')}")
    return process.pid


def start_model(config: PipelineConfig, model: str, timeout_s: float = 300.0, echo=print) -> int:
    """Start one more model job next to a running pipeline; nothing else is touched."""
    config.model(model)  # a model without a config fails here, naming the file
    job = model_job(config, model)
    if job.name in running_jobs(config) or query_states(config).get(job.name, {}).get("state") in ("started", "running"):
        raise RuntimeError(f"{job.name} is already running")
    (_dirs(config)[1] / f"{job.name}.json").unlink(missing_ok=True)
    pid = launch(config, job, echo)
    wait_running(config, [job], timeout_s, echo, stop_all_on_failure=False)
    return pid


def stop_job(config: PipelineConfig, name: str, timeout_s: float = 60.0) -> bool:
    """Stop one job process by its pid; False when it is not running as a process of its own."""
    pid = running_jobs(config).get(name)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and name in running_jobs(config):
        time.sleep(0.5)
    _kill_group(pid)
    (_dirs(config)[0] / f"{name}.pid").unlink(missing_ok=True)
    return True


def _kill_group(pid: int) -> bool:
    """SIGKILL whatever is left of a job's process group (the job's pid is its group id): when
    spark-submit's JVM exits first, its Python driver can outlive it, stuck on the dead gateway."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def wait_running(config: PipelineConfig, jobs: list[Job], timeout_s: float, echo,
                  stop_all_on_failure: bool = True) -> None:
    expected = {q for job in jobs for q in job.queries}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = running_jobs(config)
        for job in jobs:
            if job.name not in alive:
                _, _, log_dir = _dirs(config)
                tail = (log_dir / f"{job.name}.log").read_text(errors="replace").splitlines()[-30:]
                if stop_all_on_failure:
                    down(config, stop_broker=False, echo=lambda *_: None)
                raise RuntimeError(f"{job.name} exited while starting; the end of its log:\n" + "\n".join(tail))
        states = query_states(config)
        if all(states.get(q, {}).get("state") in ("started", "running") for q in expected):
            echo(f"pipeline: {len(expected)} queries running")
            return
        time.sleep(1)
    if stop_all_on_failure:
        down(config, stop_broker=False, echo=lambda *_: None)
    else:
        for job in jobs:
            stop_job(config, job.name)
    raise RuntimeError(f"the pipeline did not start within {timeout_s:.0f} s; see the logs under var/logs")


def down(config: PipelineConfig, stop_broker: bool = True, timeout_s: float = 60.0, echo=print) -> None:
    """Stop every job `up` started (by pid), then the local broker if `up` started it."""
    jobs = running_jobs(config)
    for name, pid in jobs.items():
        os.killpg(pid, signal.SIGTERM)
        echo(f"{name}: stopping pid {pid}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_jobs(config):
        time.sleep(0.5)
    still_running = running_jobs(config)
    for name, pid in jobs.items():
        if _kill_group(pid) and name in still_running:
            echo(f"{name}: killed pid {pid}")
    pid_dir, _, _ = _dirs(config)
    for pid_file in pid_dir.glob("*.pid"):
        pid_file.unlink()
    started_broker = pid_dir / BROKER_STARTED
    if stop_broker and started_broker.exists():
        if LocalBroker.from_config(config).stop():
            echo("broker: stopped")
        started_broker.unlink()


def check_healthy(config: PipelineConfig) -> None:
    """Raise with the query's own error if a query failed or a job process is gone."""
    failed = {name: state.get("exception") for name, state in query_states(config).items() if state.get("state") == "failed"}
    if failed:
        name, error = next(iter(failed.items()))
        raise RuntimeError(f"query {name} failed: {(error or '').splitlines()[0] if error else 'see var/logs'}")
    if not running_jobs(config):
        raise RuntimeError("no job is running any more; see the logs under var/logs")


def status_rows(config: PipelineConfig) -> list[dict]:
    """One row per query: its state, batch, input rate, last batch duration and consumer lag."""
    rows = []
    for name, progress in query_states(config).items():
        sources = progress.get("sources", [])
        lag = sum(int(float(s.get("metrics", {}).get("maxOffsetsBehindLatest", 0) or 0)) for s in sources)
        rows.append({
            "query": name,
            "state": progress.get("state", "?"),
            "batch": progress.get("batchId", "-"),
            "input_rows_per_s": round(progress.get("inputRowsPerSecond", 0.0) or 0.0, 1),
            "batch_ms": progress.get("durationMs", {}).get("triggerExecution", "-"),
            "lag": lag,
            "updated": progress.get("timestamp", "-"),
        })
    return rows
