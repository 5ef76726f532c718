"""rdv: run the rendezvous pipeline, on this machine or on a cluster, and look at it.

Every command takes --conf (default: conf), the directory with pipeline.yaml, features.yaml,
policy.yaml, models/ and profiles/, and --profile: local (the embedded broker and local Spark)
or profiles/<name>.yaml, such as cluster (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date
from pathlib import Path

from features.personal_key import ensure_session_key
from rdv import profiles
from rdv.config import ConfigError, load_config


def _kafka(config, args) -> int:
    from rdv.kafka_local import LocalBroker, ensure_topics, pipeline_topics
    from rdv.kafka_security import client_settings

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
    from rdv import runner

    runner.up(config, args.models or sorted(config.models), separate=args.separate, foreground=args.foreground)
    return 0


def _down(config, args) -> int:
    from rdv import runner

    runner.down(config, stop_broker=not args.keep_broker)
    return 0


def _status(config, args) -> int:
    from rdv import runner
    from rdv.kafka_local import LocalBroker

    if config.profile == "local":
        pid = LocalBroker.from_config(config).pid()
        print(f"broker: {'running, pid ' + str(pid) if pid else 'not running'}")
    supervisor = runner.supervisor_pid(config)
    print(f"supervisor: {'running, pid ' + str(supervisor) if supervisor else 'not running'}")
    states, jobs = runner.job_states(config), runner.running_jobs(config)
    for name, state in states.items():
        print(f"job {name}: {runner.describe_job(state)}")
        if state.get("failed"):
            _print_log_tail(f"  its log ({runner.run_files(config).log(name)}) ends:", state.get("log_tail", []))
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


def _print_log_tail(title: str, lines: list[str]) -> None:
    """The end of a failed job's log, as the supervisor kept it, under a title."""
    print(title)
    print("\n".join(f"    {line}" for line in lines))


def _model(config, args) -> int:
    from rdv import runner
    from rdv.model_configs import add_model_config, model_rows

    if args.action == "add":
        if not args.uri:
            raise ConfigError("rdv model add needs --uri")
        path = add_model_config(
            config, args.name, args.uri, features=args.features, output=args.output, role=args.role, force=args.force
        )
        print(f"{args.name}: wrote {path}; start its job with `rdv model start {args.name}`")
    elif args.action == "list":
        rows = model_rows(config)
        print(f"{'model':<16} {'role':<11} {'version':<20} {'uri':<32} running")
        for r in rows:
            print(f"{r['model']:<16} {r['role']:<11} {r['version']:<20} {r['uri']:<32} {r['running']}")
        for r in rows:
            if r["log_tail"]:
                _print_log_tail(f"{r['model']}: its job's log ends:", r["log_tail"])
    elif args.action == "start":
        runner.start_model(config, args.name)
    elif not runner.stop_job(config, f"score-{args.name}"):
        print(
            f"{args.name}: no job of its own is running (a model inside the one-application pipeline "
            "stops with `rdv down`)"
        )
        return 3
    else:
        print(f"{args.name}: stopped")
    return 0


def _promote(config, args) -> int:
    from models.registry import ModelNotFound, promote

    try:
        done = promote(args.registered_model, args.version, config.tracking_uri)
    except ModelNotFound as error:
        raise ConfigError(str(error)) from None
    name = done.registered_model
    if done.previous_champion in (None, done.champion):
        print(f"{name}: version {done.champion} is the champion")
    else:
        print(
            f"{name}: version {done.champion} is the champion; version {done.previous_champion}, "
            f"the previous champion, is the challenger (roll back with `rdv promote {name} {done.previous_champion}`)"
        )
    from models.following import announce_alias_change

    announce_alias_change(config.alias_marker)
    print("model jobs following @champion or @challenger score with their new version from their next micro-batch")
    return 0


def _train(config, args) -> int:
    from rdv.demo.train import train_demo_models
    from rdv.spark import build_session

    spark = build_session(config, "rdv-train")
    for alias, version in train_demo_models(spark, config, rows=args.rows).items():
        print(f"fraud version {version} is the {alias}")
    return 0


def _replay(config, args) -> int:
    from rdv.demo.replay import replay
    from rdv.kafka_security import client_settings

    sent = replay(
        client_settings(config),
        config.kafka.topics.raw.name,
        args.events,
        args.rate,
        seed=args.seed,
        drift_at=args.drift_at,
        bad_every=args.bad_every,
        id_prefix=args.id_prefix,
        progress=lambda i, n: print(f"replay: {i}/{n} sent", flush=True),
        labels_topic=config.kafka.topics.labels.name if args.label_delay is not None else None,
        label_delay_s=args.label_delay or 0.0,
    )
    print(f"replay: {sent['events']} events, {sent['bad']} bad messages and {sent['labels']} labels sent")
    return 0


def _demo(config, args) -> int:
    from rdv.demo.run import run_demo
    from rdv.spark import build_session

    spark = build_session(config, "rdv-demo")
    try:
        outcome = run_demo(
            spark,
            config,
            args.events,
            args.rate,
            separate=args.separate,
            bad_every=args.bad_every,
            drift_at=args.drift_at,
            label_delay_s=args.label_delay,
            warm_up_s=args.warm_up,
        )
    finally:
        spark.stop()
    return 0 if outcome.ok else 1


def _forget(config, args) -> int:
    from rdv import runner
    from rdv.forget import forget, report
    from rdv.spark import build_session

    if jobs := runner.running_jobs(config):
        # Its deletes can conflict with the recorders' MERGEs, and a vacuum could remove the files
        # of a commit in flight (docs/data-quality.md).
        raise ConfigError(
            f"jobs are running ({', '.join(jobs)}), and they read and write the tables it changes: "
            "stop them with `rdv down`, forget, then `rdv up` again"
        )
    spark = build_session(config, "rdv-forget")
    try:
        forgotten = forget(spark, config, args.subject_id, vacuum=args.vacuum)
    finally:
        spark.stop()
    print("\n".join(report(forgotten)))
    return 0


def _quarantine(config, args) -> int:
    from rdv.quarantine_replay import replay_quarantine
    from rdv.spark import build_session

    spark = build_session(config, "rdv-quarantine-replay")
    try:
        counts = replay_quarantine(spark, config, args.reason, args.since, dry_run=args.dry_run)
    finally:
        spark.stop()
    verb = "would send" if args.dry_run else "sent"
    for reason, count in sorted(counts.items()):
        print(f"{reason:<40} {count:>8}")
    print(f"quarantine replay: {verb} {sum(counts.values())} records back to their topics")
    return 0


def _labels(config, args) -> int:
    from comparison.backfill import backfill_labels
    from rdv.spark import build_session

    spark = build_session(config, "rdv-labels-load")
    try:
        loaded = backfill_labels(spark, config, args.source, args.format)
    finally:
        spark.stop()
    print(
        f"labels: {loaded.rows} rows read from {args.source}: {loaded.inserted} new labels, "
        f"{loaded.updated} replaced by a newer one, {sum(loaded.quarantined.values())} quarantined"
    )
    for reason, count in sorted(loaded.quarantined.items()):
        print(f"  {reason:<24} {count:>8}")
    return 0


def _compare(config, args) -> int:
    from jobs.compare import main as compare_job

    compare_job([*config.conf_args, *(["--every", args.every] if args.every else [])])
    return 0


def _report(config, args) -> int:
    from comparison.report import write_report
    from rdv.spark import build_session

    spark = build_session(config, "rdv-report")
    try:
        report = write_report(spark, config, args.out)
    finally:
        spark.stop()
    print(report.summary)
    print(f"report: {report.path}")
    return 0


def _sql(config, args) -> int:
    from rdv.catalog import register_tables
    from rdv.spark import build_session

    spark = build_session(config, "rdv-sql")
    try:
        register_tables(spark, config)
        spark.sql(args.query).show(args.limit, truncate=False)
    finally:
        spark.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rdv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_arguments(top)
    commands = top.add_subparsers(dest="command", required=True)

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

    model = commands.add_parser("model", help="add, list, start and stop model jobs (one conf/models/<name>.yaml each)")
    model.add_argument(
        "action",
        choices=["add", "list", "start", "stop"],
        help="add: write the config; list: every model with role, version and whether its job "
        "runs (or is dead, with its restarts); start/stop: its spark-submit job, under the "
        "supervisor, leaving every other job running",
    )
    model.add_argument("name", nargs="?", help="the model's name (add, start, stop)")
    model.add_argument("--uri", help="add: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a path")
    model.add_argument("--features", nargs="*", help="add: canonical features it reads (default: all)")
    model.add_argument(
        "--output",
        default="probability",
        choices=["probability", "label", "regression"],
        help="add: what the model returns (default: %(default)s)",
    )
    model.add_argument(
        "--role",
        choices=["champion", "challenger", "canary"],
        help="add: its role (default: the URI's alias, else challenger)",
    )
    model.add_argument("--force", action="store_true", help="add: replace an existing config")
    model.set_defaults(run=_model)

    promote = commands.add_parser(
        "promote",
        help="make a registered model version the champion; the previous champion becomes the challenger",
        description="Move the registry's @champion alias to VERSION and @challenger to the previous champion. "
        "Running model jobs that follow those aliases switch at their next micro-batch; nothing "
        "restarts. Roll back by promoting the old version.",
    )
    promote.add_argument("registered_model", help="the model's name in the MLflow registry (e.g. fraud)")
    promote.add_argument("version", help="the version to make the champion")
    promote.set_defaults(run=_promote)

    train = commands.add_parser("train", help="train the demo models and register them (aliases champion, challenger)")
    train.add_argument("--rows", type=int, default=20_000, help="training events (default: %(default)s)")
    train.set_defaults(run=_train)

    replay = commands.add_parser("replay", help="send generated events to the raw topic at a given rate")
    replay.add_argument("--events", type=int, default=1000, help="how many (default: %(default)s)")
    replay.add_argument("--rate", type=float, default=50, help="events per second (default: %(default)s)")
    replay.add_argument("--seed", type=int, default=7)
    replay.add_argument(
        "--drift-at",
        type=float,
        default=0.5,
        help="fraction of the events after which fraud follows the new pattern (default: %(default)s)",
    )
    replay.add_argument("--bad-every", type=int, default=0, help="add one bad message after every N events (0: none)")
    replay.add_argument("--id-prefix", default="replay", help="request ids are <prefix>-<n> (default: %(default)s)")
    replay.add_argument(
        "--label-delay",
        type=float,
        metavar="SECONDS",
        help="also send each event's ground truth to the labels topic this long after it (default: no labels)",
    )
    replay.set_defaults(run=_replay)

    quarantine = commands.add_parser(
        "quarantine",
        help="send quarantined records back to their topic, once fixed or once the spec takes them",
        description="Send the raw payloads in the Delta table `quarantine` (as they are there: fix a record "
        "with a Delta UPDATE of its `raw` column first) back to the topic they came from (the raw "
        "topic, or the labels topic for a label), where their job checks them again. A record is never replayed twice; duplicate, too_new and too_old records "
        "only when asked for by name. See docs/data-quality.md.",
    )
    quarantine.add_argument("action", choices=["replay"], help="replay: send them back to their topic")
    quarantine.add_argument(
        "--reason",
        nargs="+",
        help="only these reasons, whole (below_min:amount) or by rule (below_min) "
        "(default: every reason but duplicate:request_id, too_new:event_time and "
        "too_old:event_time)",
    )
    quarantine.add_argument(
        "--since", type=date.fromisoformat, help="only records quarantined on or after this day (YYYY-MM-DD)"
    )
    quarantine.add_argument("--dry-run", action="store_true", help="count what would be sent, send nothing")
    quarantine.set_defaults(run=_quarantine)

    forget = commands.add_parser(
        "forget",
        help="delete every row of one data subject from every Delta table, and report it",
        description="Delete a data subject's rows from the Delta tables archive, scores, results, quarantine "
        "and labels. SUBJECT_ID is the value of the feature spec's `subject` field as it arrived "
        "(with `personal: hash`, the same RDV_PERSONAL_DATA_KEY as the features job must be set). "
        "Older table versions keep the rows until a VACUUM: --vacuum runs one at once. Refused "
        "while jobs started by `rdv up` run: stop them first. See docs/data-quality.md.",
    )
    forget.add_argument("subject_id", help="the subject's value of the spec's `subject` field, e.g. a card id")
    forget.add_argument("--vacuum", action="store_true", help="then remove the files of older versions now")
    forget.set_defaults(run=_forget)

    labels = commands.add_parser(
        "labels",
        help="load labels from a file or a table into the Delta table `labels`",
        description="Load ground truth (columns request_id, label and optionally labelled_at) into the Delta "
        "table `labels`, as the rdv.labels stream does: keyed by request_id, a newer label replaces "
        "an older one, loading twice changes nothing, unusable rows go to quarantine with their "
        "reason. See docs/analysis.md.",
    )
    labels.add_argument("action", choices=["load"], help="load: read SOURCE and merge it into `labels`")
    labels.add_argument(
        "source", help="a CSV (with a header), JSON lines or Parquet file, a Delta table's directory, or a table name"
    )
    labels.add_argument(
        "--format", choices=["csv", "json", "parquet", "delta"], help="the file's format (default: from its extension)"
    )
    labels.set_defaults(run=_labels)

    compare = commands.add_parser(
        "compare",
        help="recompute the comparison tables, the recommendation per challenger and drift",
        description="Read scores, results, labels and archive; overwrite the Delta tables comparison, "
        "comparison_tests, comparison_agreement and drift (windows, metrics and the recommendation "
        "rule are in the compare section of pipeline.yaml); print a summary. See docs/analysis.md.",
    )
    compare.add_argument("--every", help="repeat every this long, e.g. '15 minutes' (default: once)")
    compare.set_defaults(run=_compare)

    report = commands.add_parser(
        "report",
        help="write the comparison as a self-contained HTML report and summarize it",
        description="Read what `rdv compare` wrote and write one HTML file with the "
        "plots embedded; print a short summary.",
    )
    report.add_argument("--out", type=Path, help="the HTML file (default: var/reports/comparison-<time>.html)")
    report.set_defaults(run=_report)

    sql = commands.add_parser(
        "sql",
        help="run a Spark SQL query over the pipeline's tables, by name",
        description="Every Delta table of the pipeline is registered in the database of "
        "compare.database (default rdv): SELECT * FROM rdv.comparison.",
    )
    sql.add_argument("query", help='the query, e.g. "SELECT model, avg(roc_auc) FROM rdv.comparison GROUP BY model"')
    sql.add_argument("--limit", type=int, default=50, help="rows to show at most (default: %(default)s)")
    sql.set_defaults(run=_sql)

    demo = commands.add_parser(
        "demo",
        help="train, start everything, replay events and their labels, wait for "
        "every answer, summarize, stop, then compare the models and report",
    )
    demo.add_argument("--events", type=int, default=2000, help="events to replay (default: %(default)s)")
    demo.add_argument("--rate", type=float, default=50, help="events per second (default: %(default)s)")
    demo.add_argument("--separate", action="store_true", help="run each job as its own spark-submit process")
    demo.add_argument(
        "--bad-every", type=int, default=100, help="one bad message after every N events (default: %(default)s)"
    )
    demo.add_argument(
        "--drift-at",
        type=float,
        default=0.5,
        help="fraction of the events after which fraud follows the new pattern, "
        "which the champion was not trained on (default: %(default)s)",
    )
    demo.add_argument(
        "--label-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="each event's ground truth reaches the labels topic this long after it (default: %(default)s)",
    )
    demo.add_argument(
        "--warm-up",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="before the run, send requests of its own until every query of the latency path is "
        "ready (past its first micro-batches), for at most this long; 0: none "
        "(default: %(default)s)",
    )
    demo.set_defaults(run=_demo)
    return top


def main(argv: list[str] | None = None) -> int:
    # MLflow logs its database set-up at INFO when it is first imported; rdv says what matters.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rdv").setLevel(logging.INFO)
    # kafka-python logs every refused connection while a broker starts; rdv reports failures itself.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        config = load_config(args.conf, args.profile)
        # A random key for a local run; never for forget, which must find the pseudonyms the jobs wrote.
        if config.profile == "local" and args.command != "forget":
            ensure_session_key()
        if getattr(args, "action", None) in ("add", "start", "stop") and args.command == "model" and not args.name:
            raise ConfigError(f"rdv model {args.action} needs the model's name")
        return args.run(config, args)
    except (ConfigError, RuntimeError) as error:
        print(f"rdv {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
