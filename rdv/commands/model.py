"""`rdv model`, `rdv promote` and `rdv train`: the model jobs, the registry's aliases, the demo's models."""

from __future__ import annotations

import argparse

from rdv.commands.pipeline import print_log_tail
from rdv.config import ConfigError


def _model(config, args) -> int:
    from rdv.operations import runner
    from rdv.operations.model_configs import add_model_config, model_rows

    if args.action != "list" and not args.name:
        raise ConfigError(f"rdv model {args.action} needs the model's name")
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
                print_log_tail(f"{r['model']}: its job's log ends:", r["log_tail"])
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


def register(commands: argparse._SubParsersAction) -> None:
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
        "restarts. Roll back by promoting the old version. The change is recorded in the registry "
        "(the next `rdv compare` copies it into the table promotions), and a version that guarded "
        "promotion (compare.promote) rolled back may be promoted automatically again after this.",
    )
    promote.add_argument("registered_model", help="the model's name in the MLflow registry (e.g. fraud)")
    promote.add_argument("version", help="the version to make the champion")
    promote.set_defaults(run=_promote)
    train = commands.add_parser("train", help="train the demo models and register them (aliases champion, challenger)")
    train.add_argument("--rows", type=int, default=20_000, help="training events (default: %(default)s)")
    train.set_defaults(run=_train)
