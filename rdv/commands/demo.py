"""`rdv demo`: the whole pipeline on generated data, from training to the report."""

from __future__ import annotations

import argparse


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


def register(commands: argparse._SubParsersAction) -> None:
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
