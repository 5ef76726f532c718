"""`rdv kafka`, `rdv up`, `rdv down` and `rdv status`: the pipeline on this machine, started, stopped and watched."""

from __future__ import annotations

import argparse


def _kafka(config, args) -> int:
    from rdv.kafka_security import client_settings
    from rdv.operations.kafka_local import LocalBroker, ensure_topics, pipeline_topics

    broker = LocalBroker.from_config(config)
    if args.action == "up":
        pid = broker.start()
        created = ensure_topics(client_settings(config), pipeline_topics(config))
        print(f"broker: running on {broker.bootstrap}, pid {pid}; topics created: {', '.join(created) or 'none'}")
    elif args.action == "down":
        print("broker: stopped" if broker.stop() else "broker: was not running")
    else:
        running = broker.pid()
        print(f"broker: running on {broker.bootstrap}, pid {running}" if running else "broker: not running")
        return 0 if running else 3
    return 0


def _up(config, args) -> int:
    from rdv.operations import runner

    runner.up(config, args.models or sorted(config.models), separate=args.separate, foreground=args.foreground)
    return 0


def _down(config, args) -> int:
    from rdv.operations import runner

    runner.down(config, stop_broker=not args.keep_broker)
    return 0


def _status(config, args) -> int:
    from rdv.operations import runner
    from rdv.operations.kafka_local import LocalBroker

    if config.profile == "local":
        pid = LocalBroker.from_config(config).pid()
        print(f"broker: {'running, pid ' + str(pid) if pid else 'not running'}")
    supervisor = runner.supervisor_pid(config)
    print(f"supervisor: {'running, pid ' + str(supervisor) if supervisor else 'not running'}")
    states, jobs = runner.job_states(config), runner.running_jobs(config)
    for name, state in states.items():
        print(f"job {name}: {runner.describe_job(state)}")
        if state.get("failed"):
            print_log_tail(f"  its log ({runner.run_files(config).log(name)}) ends:", state.get("log_tail", []))
    for name, pid in jobs.items():
        if name not in states:
            print(f"job {name}: running, pid {pid}, without a supervisor: nothing restarts it (`rdv down` stops it)")
    if not states and not jobs:
        print("jobs: none running")
    rows = runner.status_rows(config)
    if rows:
        print(f"{'query':<20} {'state':<8} {'ready':<5} {'batch':>6} {'rows/s':>8} {'batch ms':>9} {'lag':>7}  updated")
        for r in rows:
            print(
                f"{r['query']:<20} {r['state']:<8} {'yes' if r['ready'] else 'no':<5} {r['batch']:>6} "
                f"{r['input_rows_per_s']:>8} {r['batch_ms']:>9} {r['lag']:>7}  {r['updated']}"
            )
        for r in rows:
            if r["state"] == "restarting":
                print(
                    f"query {r['query']}: failed {r['failures']} time(s) in a row, its job starts it again at "
                    f"{r['next_start_at']}: {_first_line(r['exception'])}"
                )
            elif r["state"] == "failed":
                print(f"query {r['query']}: failed: {_first_line(r['exception'])}")
        warming = [r["query"] for r in rows if not r["ready"]]
        if jobs:
            print(
                "pipeline: ready"
                if not warming
                else f"pipeline: warming up ({', '.join(warming)} not past their first micro-batches with records)"
            )
    return 0 if jobs or supervisor else 3


def _first_line(error: str | None) -> str:
    return (error or "").strip().splitlines()[0] if (error or "").strip() else "see the job's log under var/logs"


def print_log_tail(title: str, lines: list[str]) -> None:
    """The end of a failed job's log, as the supervisor kept it, under a title."""
    print(title)
    print("\n".join(f"    {line}" for line in lines))


def register(commands: argparse._SubParsersAction) -> None:
    kafka = commands.add_parser("kafka", help="the local single-node broker (local profile)")
    kafka.add_argument(
        "action", choices=["up", "down", "status"], help="start it and create the topics, stop it, or show it"
    )
    kafka.set_defaults(run=_kafka)
    up = commands.add_parser(
        "up",
        help="start the broker (local profile) and every job under a supervisor that restarts a job that dies",
        description="Start the local broker (local profile), then the supervisor, which runs each job as a process "
        "of its own and starts a job that dies again after a backoff (the supervisor section of "
        "pipeline.yaml); each job resumes from its checkpoints. By default two Spark applications: "
        "the latency path (features, models, rendezvous) and the recording (decoy, recorder) at a "
        "lower CPU priority. Returns once every query runs; `rdv status` shows each job's restarts "
        "and when the pipeline is ready, `rdv down` stops everything. See docs/operations.md.",
    )
    up.add_argument("--separate", action="store_true", help="one spark-submit process per job, as production runs them")
    up.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground and print each job's starts and exits; Ctrl-C or SIGTERM stops "
        "every job and the broker",
    )
    up.add_argument("--models", nargs="*", help="model configs to run (default: every file in conf/models)")
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="stop the supervisor and every job `rdv up` started, then the local broker")
    down.add_argument("--keep-broker", action="store_true", help="leave the local broker running")
    down.set_defaults(run=_down)
    commands.add_parser(
        "status", help="the supervisor, each job's pid and restarts, each query's progress and consumer lag"
    ).set_defaults(run=_status)
