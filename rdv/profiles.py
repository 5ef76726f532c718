"""Profiles: one conf directory for every place the pipeline runs.

``pipeline.yaml`` holds the embedded default, the ``local`` profile: a broker that rdv starts on
127.0.0.1, Spark in local mode, tables and checkpoints under var/. Any other profile is a file
``profiles/<name>.yaml`` beside it whose settings override pipeline.yaml's, mapping by mapping: a
list or a value in the profile replaces the default's, a mapping is merged key by key. So a
profile holds only what differs where it runs (the brokers, the master, the storage), and a
setting added to pipeline.yaml reaches every profile.

The profile is chosen by ``--profile``, else by the environment variable ``RDV_PROFILE``, else by
pipeline.yaml's own ``profile:``, else it is ``local``. Any string in pipeline.yaml or a profile
may name environment variables, ``${NAME}`` or ``${NAME:-default}``, so that one file serves every
cluster of a kind and the deployment fills in the rest. Secrets do not go that way: an
interpolated value is part of the config, which errors and reports may show. They come only
through the ``*_env`` fields of ``kafka.security``, read when a client connects.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path

from rdv.validation import ConfigError

PROFILE_ENV = "RDV_PROFILE"
LOCAL = "local"
NAME = r"^[a-z][a-z0-9_-]*$"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--conf and --profile, as every command and job takes them."""
    parser.add_argument("--conf", default="conf", help="the conf directory (default: %(default)s)")
    parser.add_argument(
        "--profile",
        help=f"the profile: local or a file profiles/<name>.yaml in the conf directory "
        f"(default: ${PROFILE_ENV}, else pipeline.yaml's profile, else local)",
    )


def chosen(asked: str | None, default: str | None) -> tuple[str, bool]:
    """The profile's name, and whether it was asked for (by --profile or RDV_PROFILE) rather than
    left to pipeline.yaml's default."""
    name = asked or os.environ.get(PROFILE_ENV)
    if name:
        return name, True
    return default or LOCAL, False


def profile_file(conf_dir: Path, name: str) -> Path:
    return conf_dir / "profiles" / f"{name}.yaml"


def known_profiles(conf_dir: Path) -> list[str]:
    return sorted({LOCAL, *(p.stem for p in (conf_dir / "profiles").glob("*.yaml"))})


def overlay(base: dict, override: dict) -> dict:
    """base with override's settings, mappings merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def interpolate(data, source: Path, field: str = "", environ: Mapping[str, str] | None = None):
    """data with every ${NAME} and ${NAME:-default} in its strings replaced from the environment;
    a variable that is not set and has no default fails, named with its file and field."""
    if environ is None:
        environ = os.environ
    if isinstance(data, dict):
        return {k: interpolate(v, source, f"{field}.{k}" if field else str(k), environ) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, source, f"{field}[{i}]", environ) for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{source}: {field or '(top level)'}: the environment variable {name} is not set "
            f"(set it, or give a default: ${{{name}:-...}})"
        )

    return _VARIABLE.sub(value, data)


def sets(settings: dict, loc: tuple) -> bool:
    """Whether a profile's settings hold the field at loc (a validation error's location)."""
    for part in loc:
        if not isinstance(settings, dict) or part not in settings:
            return False
        settings = settings[part]
    return bool(loc)
