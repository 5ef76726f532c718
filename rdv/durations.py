"""Durations as the configuration files spell them: '500 ms', '2 seconds', '1 minute', '1 hour', '7 days'.

The spelling is also Spark's own, so a configured trigger goes to Spark as written.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|seconds?|m|minutes?|h|hours?|d|days?)\s*$")
_UNIT_MS = {"ms": 1, "milli": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """Parse '500 ms', '2 seconds', '1 minute', '1 hour' or '7 days' into milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like '500 ms', '2 seconds', '1 minute', '1 hour' or '7 days'")
    value, unit = float(match.group(1)), match.group(2)
    prefix = "ms" if unit == "ms" else "milli" if unit.startswith("milli") else unit[0]
    return int(value * _UNIT_MS[prefix])


def _check_duration(value: str) -> str:
    duration_ms(value)
    return value


# A duration, checked at load.
Duration = Annotated[str, AfterValidator(_check_duration)]
