"""Validation errors of the configuration files, as the person about to edit them reads them."""
from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


def explain(path: Path | str, error: ValidationError) -> str:
    """One line per problem: the file, the field's dotted path, and what is wrong with it."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = "unknown field (check the spelling)" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"{path}: {field}: {message}")
    return "\n".join(lines)
