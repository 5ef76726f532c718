"""Starting, watching and stopping the pipeline's jobs, under the supervisor (rdv/operations/supervisor.py).

`up` starts the local broker (local profile), writes the plan (one Spark application with every
query, the default, or one spark-submit per job with --separate, as production runs them) and
starts the supervisor, which runs each job as a process of its own, with a log under var/logs,
and starts a job that dies again. Each query reports its progress to var/run/progress (see
rdv.progress), which is what `status` shows with each job's restarts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rdv.config import PipelineConfig
from rdv.durations import duration_ms
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import LocalBroker, ensure_topics, pipeline_topics
from rdv.operations.processes import alive, group_alive, terminate
from rdv.operations.supervisor import Job, RunFiles, exit_text, read_plan, read_state, write_plan
from rdv.spark_launch import DRIVER_JAVA_OPTIONS, PACKAGES, cached_jars

BROKER_STARTED = "broker.started-by-up"
JOBS_DIR = Path(__file__).resolve().parents[2] / "jobs"
JOB_FILES = {"features": "featurize.py", "rendezvous": "decide.py", "recording": "recording.py"}


def run_files(config: PipelineConfig) -> RunFiles:
    return RunFiles(config.path(config.paths.var))


def plan(config: PipelineConfig, models: list[str], separate: bool) -> list[Job]:
    """The processes that run the given models and every other job: the latency path's, in one
    application or one spark-submit each, and the recording application (decoy and recorder) at the
    lower CPU priority `supervisor.recording_nice`."""
    from jobs import decide, featurize, recording  # their query names; the jobs import Spark, `rdv status` does not

    conf = config.conf_args
    if separate:
        submit = _submit_command(config)
        jobs = [Job("features", [*submit, str(JOBS_DIR / JOB_FILES["features"]), *conf], featurize.QUERIES)]
        jobs += [model_job(config, m) for m in models]
        jobs.append(Job("rendezvous", [*submit, str(JOBS_DIR / JOB_FILES["rendezvous"]), *conf], decide.QUERIES))
        recorder = [*submit, str(JOBS_DIR / JOB_FILES["recording"]), *conf]
    else:
        answers = (*featurize.QUERIES, *[f"score-{m}" for m in models], *decide.QUERIES)
        jobs = [Job("pipeline", [sys.executable, "-m", "jobs.pipeline", *conf, "--models", *models], answers)]
        recorder = [sys.executable, "-m", "jobs.recording", *conf]
    return [*jobs, Job("recording", recorder, recording.QUERIES, config.supervisor.recording_nice)]


def _submit_command(config: PipelineConfig, memory: str = "1g", python_memory: str | None = None) -> list[str]:
    command = [
        str(spark_submit()),
        "--master",
        config.spark.master,
        "--driver-memory",
        memory,
        "--executor-memory",
        memory,
    ]
    # A host without the cached jars (a cluster's edge node) has spark-submit fetch them.
    jars = cached_jars(config)
    command += ["--jars", ",".join(jars)] if jars else ["--packages", PACKAGES]
    # The driver's JVM is running before the job's session reads spark.conf, so what it needs at
    # launch (its Java options above all) goes on the command line.
    settings = dict(config.spark.conf)
    java_options = [settings.pop(DRIVER_JAVA_OPTIONS, "")]
    if config.spark.heap_at_start:
        java_options.insert(0, f"-Xms{memory} -XX:+AlwaysPreTouch")
    if options := " ".join(o for o in java_options if o):
        command += ["--driver-java-options", options]
    if python_memory:
        settings["spark.executor.pyspark.memory"] = python_memory
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    return command


def spark_submit() -> Path:
    """The cluster's own spark-submit where SPARK_HOME names an installation of Spark, the one of
    the installed pyspark if not."""
    home = os.environ.get("SPARK_HOME")
    if home:
        return Path(home) / "bin" / "spark-submit"
    installed = importlib.util.find_spec("pyspark")  # found, not imported: `rdv status` does without Spark
    if installed is None or installed.origin is None:
        raise RuntimeError("no Spark: set SPARK_HOME to an installation of Spark, or install pyspark")
    return Path(installed.origin).parent / "bin" / "spark-submit"


def model_job(config: PipelineConfig, model: str) -> Job:
    """The spark-submit process of one model job, with the model's own memory settings."""
    settings = config.model(model).spark
    command = [
        *_submit_command(config, settings.memory, settings.python_memory),
        str(JOBS_DIR / "score.py"),
        *config.conf_args,
        "--model",
        model,
    ]
    return Job(f"score-{model}", command, (f"score-{model}",))


def running_jobs(config: PipelineConfig) -> dict[str, int]:
    """Job name -> pid of every job process that is alive, by the pid files the supervisor keeps
    (they outlive a supervisor that was killed, so `down` can still stop its jobs)."""
    files = run_files(config)
    jobs = {}
    for pid_file in sorted(files.jobs.glob("*.pid")):
        pid = int(pid_file.read_text())
        if alive(pid):
            jobs[pid_file.stem] = pid
        else:
            pid_file.unlink(missing_ok=True)
    return jobs


def supervisor_pid(config: PipelineConfig) -> int | None:
    files = run_files(config)
    try:
        pid = int(files.pid.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def job_states(config: PipelineConfig) -> dict[str, dict]:
    """Job name -> the supervisor's view of it: pid, running, restarts, last exit, next start;
    empty when no supervisor runs."""
    return read_state(run_files(config)) if supervisor_pid(config) else {}


def restarts_text(state: dict) -> str:
    if not state.get("restarts") and state.get("last_exit") is None:
        return ""
    at = state.get("last_exit_at") or "?"
    return f"{state.get('restarts', 0)} restart(s), last exit {exit_text(state.get('last_exit'))} at {at}"


def job_status(state: dict) -> str:
    """Running with its pid, failed for good, dead and when it starts again, or stopped."""
    if state.get("running"):
        return f"running, pid {state['pid']}"
    if state.get("failed"):
        return f"failed: {state.get('failures_in_window')} failures within supervisor.failure_window, not started again"
    if state.get("next_start_at") is not None:
        return f"dead, starting again in {max(state['next_start_at'] - time.time(), 0):.0f} s"
    return "stopped"


def describe_job(state: dict) -> str:
    """A job as `rdv status` shows it: its status, then its restarts if it had any."""
    history = restarts_text(state)
    return f"{job_status(state)}; {history}" if history else job_status(state)


# The states a query's progress file has while its process runs it.
LIVE_STATES = ("started", "running", "restarting")


def query_running(progress: dict) -> bool:
    """Whether the query of this progress file runs: its file says so and a process of its process
    group is alive. A job killed with SIGKILL, or a machine that went down, leaves a file that says
    running."""
    pgid = progress.get("pgid")
    return progress.get("state") in LIVE_STATES and isinstance(pgid, int) and group_alive(pgid)


def query_states(config: PipelineConfig) -> dict[str, dict]:
    states = {}
    for path in sorted(run_files(config).progress.glob("*.json")):
        try:
            states[path.stem] = json.loads(path.read_text())
        except ValueError:
            continue  # being rewritten
    return states


def up(
    config: PipelineConfig,
    models: list[str],
    separate: bool = False,
    timeout_s: float = 300.0,
    echo=print,
    foreground: bool = False,
) -> dict[str, int]:
    """Start the broker (local profile), the supervisor and through it every job; return the jobs'
    pids once every query is running. In the foreground, then follow the supervisor's log until
    Ctrl-C or SIGTERM stops everything."""
    if (pid := supervisor_pid(config)) or (pid := next(iter(running_jobs(config).values()), None)):
        raise RuntimeError(f"the pipeline is already running (pid {pid}): run `rdv down` first")
    files = run_files(config)
    files.jobs.mkdir(parents=True, exist_ok=True)
    if config.profile == "local":
        broker = LocalBroker.from_config(config)
        if broker.pid() is None:
            echo(f"broker: starting on {broker.bootstrap}")
            broker.start()
            (files.jobs / BROKER_STARTED).touch()  # so that `down` stops it again
        else:
            echo(f"broker: running on {broker.bootstrap}")
    ensure_topics(client_settings(config), pipeline_topics(config))
    files.progress.mkdir(parents=True, exist_ok=True)
    for stale in files.progress.glob("*.json"):
        stale.unlink()
    files.state.unlink(missing_ok=True)
    jobs = plan(config, models, separate)
    write_plan(files, jobs)
    supervisor = start_supervisor(config, foreground)
    echo(f"supervisor: started, pid {supervisor.pid}, log {files.log('supervisor') if not foreground else 'here'}")
    try:
        pids = wait_running(config, jobs, timeout_s, echo)
    except BaseException:
        if foreground:
            down(config, echo=echo)
        raise
    if foreground:
        follow(config, supervisor, echo)
    return pids


def start_supervisor(config: PipelineConfig, foreground: bool = False) -> subprocess.Popen:
    """The supervisor as a process of its own (a session of its own unless in the foreground,
    where Ctrl-C reaches it with `rdv`). Its pid file is written here, so no caller races it."""
    files = run_files(config)
    for directory in (files.logs, files.run):
        directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "rdv.operations.supervisor", *config.conf_args]
    if foreground:
        process = subprocess.Popen(command, cwd=config.root, stdin=subprocess.DEVNULL)
    else:
        with open(files.log("supervisor"), "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=config.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    files.pid.write_text(str(process.pid))
    return process


def follow(config: PipelineConfig, supervisor: subprocess.Popen, echo) -> None:
    """Wait for the foreground supervisor, which prints each start and exit; on Ctrl-C (it gets the
    SIGINT too) or SIGTERM, wait for it to stop every job, then stop the broker `up` started."""
    signal.signal(signal.SIGTERM, lambda *_: supervisor.send_signal(signal.SIGTERM))
    try:
        while supervisor.poll() is None:
            try:
                supervisor.wait()
            except KeyboardInterrupt:
                continue  # the supervisor got it too and is stopping the jobs
    finally:
        down(config, echo=echo)


def add_jobs(config: PipelineConfig, jobs: list[Job]) -> None:
    """Add jobs to the running supervisor's plan; it starts them within a second."""
    files = run_files(config)
    planned = read_plan(files)
    if clash := {job.name for job in jobs} & {job.name for job in planned}:
        raise RuntimeError(f"{', '.join(sorted(clash))}: already running")
    write_plan(files, [*planned, *jobs])


def start_model(config: PipelineConfig, model: str, timeout_s: float = 300.0, echo=print) -> int:
    """Start one more model job next to a running pipeline; nothing else is touched."""
    config.model(model)  # a model without a config fails here, naming the file
    if supervisor_pid(config) is None:
        raise RuntimeError("no pipeline is running: start it with `rdv up` first")
    job = model_job(config, model)
    if job_states(config).get(job.name, {}).get("failed"):
        stop_job(config, job.name)  # the supervisor gave up on it: planned afresh, its count starts again
    state = query_states(config).get(job.name, {})
    if query_running(state):
        raise RuntimeError(f"{job.name} is already running")
    (run_files(config).progress / f"{job.name}.json").unlink(missing_ok=True)
    add_jobs(config, [job])
    return wait_running(config, [job], timeout_s, echo, stop_all_on_failure=False)[job.name]


def stop_job(config: PipelineConfig, name: str) -> bool:
    """Take a job out of the plan and wait until the supervisor has stopped it; False when it is
    not a job of its own."""
    files = run_files(config)
    planned = read_plan(files)
    if name not in {job.name for job in planned}:
        return False
    write_plan(files, [job for job in planned if job.name != name])
    deadline = time.monotonic() + duration_ms(config.supervisor.stop_timeout) / 1000 + 15
    while time.monotonic() < deadline and supervisor_pid(config) and name in read_state(files):
        time.sleep(0.5)
    if (pid := running_jobs(config).get(name)) is not None:  # no supervisor to stop it
        _stop_groups(config, {name: pid}, lambda *_: None)
    return True


def wait_running(
    config: PipelineConfig, jobs: list[Job], timeout_s: float, echo, stop_all_on_failure: bool = True
) -> dict[str, int]:
    """Wait until every query of jobs reports from the job's current process; the jobs' pids. A job
    that exits while starting fails this with the end of its log, and is taken out of the plan
    (with every other job, when stop_all_on_failure)."""
    files = run_files(config)
    expected = {q: job.name for job in jobs for q in job.queries}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if supervisor_pid(config) is None:
            _give_up(config, jobs, stop_all_on_failure)
            raise RuntimeError(f"the supervisor exited; see {files.log('supervisor')}")
        states = read_state(files)
        for job in jobs:
            if states.get(job.name, {}).get("last_exit") is not None:
                tail = files.log(job.name).read_text(errors="replace").splitlines()[-30:]
                _give_up(config, jobs, stop_all_on_failure)
                raise RuntimeError(f"{job.name} exited while starting; the end of its log:\n" + "\n".join(tail))
        pids: dict[str, int] = {
            job.name: pid for job in jobs if (pid := states.get(job.name, {}).get("pid")) is not None
        }
        progress = query_states(config)
        if all(
            progress.get(q, {}).get("state") in ("started", "running") and progress[q].get("pgid") == pids.get(name)
            for q, name in expected.items()
        ):
            echo(
                f"pipeline: {len(expected)} queries running; each is ready after its first micro-batches "
                "with records (`rdv status`)"
            )
            return pids
        time.sleep(1)
    _give_up(config, jobs, stop_all_on_failure)
    raise RuntimeError(f"the pipeline did not start within {timeout_s:.0f} s; see the logs under {files.logs}")


def _give_up(config: PipelineConfig, jobs: list[Job], stop_all: bool) -> None:
    if stop_all:
        down(config, stop_broker=False, echo=lambda *_: None)
    else:
        for job in jobs:
            stop_job(config, job.name)


def down(config: PipelineConfig, stop_broker: bool = True, echo=print) -> None:
    """Stop the supervisor, which stops every job; then any job left without one (a supervisor
    that was killed), by its pid file; then the local broker if `up` started it."""
    files = run_files(config)
    stop_timeout_s = duration_ms(config.supervisor.stop_timeout) / 1000
    if (pid := supervisor_pid(config)) is not None:
        for name, job_pid in running_jobs(config).items():
            echo(f"{name}: stopping pid {job_pid}")
        # It stops its jobs first, each within the stop timeout.
        terminate({"supervisor": pid}, stop_timeout_s + 15, group=False)
        echo(f"supervisor: stopped pid {pid}")
    _stop_groups(config, running_jobs(config), echo, stop_timeout_s)
    for pid_file in files.jobs.glob("*.pid"):
        pid_file.unlink()
    files.pid.unlink(missing_ok=True)
    files.plan.unlink(missing_ok=True)
    started_broker = files.jobs / BROKER_STARTED
    if stop_broker and started_broker.exists():
        if LocalBroker.from_config(config).stop():
            echo("broker: stopped")
        started_broker.unlink()


def _stop_groups(config: PipelineConfig, jobs: dict[str, int], echo, timeout_s: float = 60.0) -> None:
    """SIGTERM each job's process group, then SIGKILL what is left after timeout_s."""
    for name, pid in jobs.items():
        echo(f"{name}: stopping pid {pid}")
    for name in terminate(jobs, timeout_s):
        echo(f"{name}: killed pid {jobs[name]}")
    for name in jobs:
        run_files(config).pid_file(name).unlink(missing_ok=True)


def check_healthy(config: PipelineConfig) -> None:
    """Raise with the query's own error if a query failed, or if no job runs any more."""
    failed = {
        name: state.get("exception") for name, state in query_states(config).items() if state.get("state") == "failed"
    }
    if failed:
        name, error = next(iter(failed.items()))
        raise RuntimeError(f"query {name} failed: {(error or '').splitlines()[0] if error else 'see var/logs'}")
    if not running_jobs(config):
        raise RuntimeError("no job is running any more; see the logs under var/logs")


def warming_queries(config: PipelineConfig, answers_only: bool = False) -> list[str]:
    """The queries that are not ready yet (rdv/progress.py): past their first micro-batches. With
    answers_only, those of the latency path alone: the recording's run at a lower priority, and
    the data-quality query's first three micro-batches take minutes (quality_trigger)."""
    from jobs import recording  # its query names; the jobs import Spark, `rdv status` does not

    skip = set(recording.QUERIES) if answers_only else set()
    return [name for name, progress in query_states(config).items() if not progress.get("ready") and name not in skip]


def status_rows(config: PipelineConfig) -> list[dict]:
    """One row per query: its state, batch, input rate, last batch duration, consumer lag, whether
    it is ready, and for a failed or restarting query its error (a restarting one with its failures
    in a row and when it starts again). A query whose file says it runs while its process is gone
    reads as `gone`, not ready."""
    rows = []
    for name, progress in query_states(config).items():
        gone = progress.get("state") in LIVE_STATES and not query_running(progress)
        sources = progress.get("sources", [])
        lag = sum(int(float(s.get("metrics", {}).get("maxOffsetsBehindLatest", 0) or 0)) for s in sources)
        rows.append(
            {
                "query": name,
                "state": "gone" if gone else progress.get("state", "?"),
                "batch": progress.get("batchId", "-"),
                "input_rows_per_s": round(progress.get("inputRowsPerSecond", 0.0) or 0.0, 1),
                "batch_ms": progress.get("durationMs", {}).get("triggerExecution", "-"),
                "ready": bool(progress.get("ready")) and not gone,
                "lag": lag,
                "updated": progress.get("timestamp", "-"),
                "exception": progress.get("exception"),
                "failures": progress.get("failures"),
                "next_start_at": progress.get("next_start_at"),
            }
        )
    return rows
