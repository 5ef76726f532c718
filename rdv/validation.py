"""Validation errors of the configuration files, as the person about to edit them reads them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError


def explain(path: Path | str, error: ValidationError, origin: Callable[[tuple], Path | str] | None = None) -> str:
    """One line per problem: the file, the field's dotted path, and what is wrong with it. With
    origin, the file is the one that set the field (a profile over pipeline.yaml)."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = "unknown field (check the spelling)" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"{origin(problem['loc']) if origin else path}: {field}: {message}")
    return "\n".join(lines)
