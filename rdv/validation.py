"""What every configuration file shares: one frozen base for its models, one YAML reader, one
error type, and validation errors as the person about to edit the file reads them.

pipeline.yaml with its profiles and models/*.yaml (rdv/config.py), policy.yaml (rdv/policy.py) and
features.yaml (rdv/feature_spec.py) are each read with `read_yaml` and validated with `validated`, so
that every mistake in any of them is a ConfigError that names the file and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the field."""


class Frozen(BaseModel):
    """A configuration model: immutable once loaded, and an unknown field is an error (a typo is
    never silently ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


Model = TypeVar("Model", bound=BaseModel)
# A single value a configuration compares with or allows (a check's allowed values, a rule's operand).
Scalar = bool | int | float | str


def read_yaml(path: Path, missing: str = "file not found") -> dict:
    """The file's top-level mapping ({} for an empty file); a ConfigError for a file that is not
    there (with `missing` as the reason), is not YAML, or is not a mapping."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def validated(
    model: type[Model],
    data: dict,
    path: Path | str,
    context: dict[str, Any] | None = None,
    origin: Callable[[tuple], Path | str] | None = None,
) -> Model:
    """data as the model, or a ConfigError with one line per problem (explain)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        raise ConfigError(explain(path, error, origin)) from None


def explain(path: Path | str, error: ValidationError, origin: Callable[[tuple], Path | str] | None = None) -> str:
    """One line per problem: the file, the field's dotted path, and what is wrong with it. With
    origin, the file is the one that set the field (a profile over pipeline.yaml)."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = "unknown field (check the spelling)" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"{origin(problem['loc']) if origin else path}: {field}: {message}")
    return "\n".join(lines)
