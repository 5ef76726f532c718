"""The wall clock as a column, for the times a job stamps on what it writes (archived_at,
quarantined_at, recorded_at) and for the features job's arrival marks."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def wall_clock() -> Column:
    """The time a row is processed, to the millisecond.

    Not current_timestamp(): Spark turns that into a literal for each micro-batch, whole-stage code
    generation writes the literal into the generated Java, and so every micro-batch compiled its
    stages afresh and the JIT compiled the new classes again (bench/README.md, "Tuning"). A
    java_method call is evaluated row by row, outside the generated code, which stays the same.
    """
    return F.timestamp_millis(F.expr("java_method('java.lang.System', 'currentTimeMillis')").cast("bigint"))
