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

from features.personal_key import ensure_session_key
from rdv import profiles
from rdv.commands import analysis, data, demo, model, pipeline
from rdv.config import ConfigError, load_config

# Commands that run the features job or hash raw events themselves: on a local run without a key
# they get a random one (ensure_session_key). Never forget, which must find the pseudonyms the jobs
# wrote; the others never hash.
_HASHING = ("up", "demo", "train")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rdv", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_arguments(top)
    commands = top.add_subparsers(dest="command", required=True)
    # In the order `rdv --help` lists them.
    for group in (pipeline, model, data, analysis, demo):
        group.register(commands)
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
        if config.profile == "local" and args.command in _HASHING:
            ensure_session_key()
        return args.run(config, args)
    except (ConfigError, RuntimeError) as error:
        print(f"rdv {args.command}: {error}", file=sys.stderr)
        return 2
