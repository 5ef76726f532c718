"""`rdv replay`, `rdv quarantine`, `rdv forget` and `rdv labels`: data into the pipeline, back into it, and out of its tables."""

from __future__ import annotations

import argparse
from datetime import date

from rdv.config import ConfigError


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


def _quarantine(config, args) -> int:
    from rdv.operations.quarantine_replay import replay_quarantine
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


def _forget(config, args) -> int:
    from rdv.operations import runner
    from rdv.operations.forget import forget, report
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


def register(commands: argparse._SubParsersAction) -> None:
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
