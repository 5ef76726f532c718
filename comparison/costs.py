"""What each model costs, beside what it gains: CPU seconds per 1,000 requests, from the samples of
the model jobs in the table `costs` (models/cost.py).

A sample is the CPU a job spent and the requests it scored between two times. Its figure is spread
over the windows its interval overlaps, in proportion to the overlap, so that a window shorter than
a sample (samples are `compare.cost_sample` apart or more) still gets one, the rate of the samples
around it. A sample that spans idle time is spread over at most its last MAX_WINDOWS
windows. The samples are of processing time and the windows of event time; in a pipeline that keeps
up they are seconds apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from comparison.significance import Evidence
from models.cost import COST_ROW

MAX_WINDOWS = 100
PER = 1000  # the figure is CPU seconds per this many requests
# The columns comparison_tests has beside each challenger's evidence (cost_columns).
COST_COLUMNS = ("champion_cpu_s_per_1000", "challenger_cpu_s_per_1000")


def windowed_costs(costs: DataFrame, window_ms: int) -> DataFrame:
    """Per window and model: cost_cpu_s and cost_requests (the samples' shares),
    cpu_s_per_1000_requests, and cost_measured_by (processes, tasks, or both over a change of mode)."""
    w = F.lit(window_ms).cast("long")
    start, end = F.unix_millis("measured_from"), F.unix_millis("measured_to")
    last = F.floor((end - 1) / w) * w
    first = F.greatest(F.floor(start / w) * w, last - (MAX_WINDOWS - 1) * w)
    spread = (
        costs.where(F.col("measured_to") > F.col("measured_from"))
        .withColumn("_first", first)
        .withColumn("_from", F.greatest(start, F.col("_first")))
        .withColumn("_ws", F.explode(F.sequence(F.col("_first"), last, w)))
        .withColumn(
            "_share",
            (F.least(end, F.col("_ws") + w) - F.greatest(F.col("_from"), F.col("_ws"))) / (end - F.col("_from")),
        )
    )
    return (
        spread.groupBy(F.timestamp_millis("_ws").alias("window_start"), "model")
        .agg(
            F.sum(F.col("cpu_s") * F.col("_share")).alias("cost_cpu_s"),
            F.sum(F.col("requests") * F.col("_share")).alias("cost_requests"),
            F.array_join(F.array_sort(F.collect_set("measured_by")), ",").alias("cost_measured_by"),
        )
        .withColumn("cpu_s_per_1000_requests", F.col("cost_cpu_s") * PER / F.col("cost_requests"))
    )


def with_costs(comparison: DataFrame, costs: DataFrame | None, window_ms: int) -> DataFrame:
    """The comparison table (comparison/tables.comparison_table) with windowed_costs' columns, null
    where no sample covers a window (the served answer, a pipeline from before costs were sampled)."""
    if costs is None:
        costs = comparison.sparkSession.createDataFrame([], COST_ROW)
    return comparison.join(windowed_costs(costs, window_ms), ["window_start", "model"], "left").orderBy(
        "window_start", "model"
    )


def cpu_per_1000(samples: pd.DataFrame, model: str, start: datetime | None, end: datetime | None) -> float | None:
    """The model's CPU seconds per 1,000 requests over [start, end], from the samples that overlap it,
    each by the share of it inside; None without a sample."""
    mine, share = samples[samples["model"] == model], 1.0
    if mine.empty:  # no sample of it, or no table `costs` yet
        return None
    if start is not None and end is not None:
        start, end = _utc(pd.Timestamp(start)), _utc(pd.Timestamp(end))
        since, until = _utc(mine["measured_from"]), _utc(mine["measured_to"])
        inside_at_all = (until > start) & (since < end)
        mine, since, until = mine[inside_at_all], since[inside_at_all], until[inside_at_all]
        length = (until - since).dt.total_seconds()
        inside = (until.clip(upper=end) - since.clip(lower=start)).dt.total_seconds()
        share = (inside / length).where(length > 0, 1.0)
    requests = (mine["requests"] * share).sum()
    return float((mine["cpu_s"] * share).sum() * PER / requests) if requests > 0 else None


def _utc(times):
    """Times as UTC without a time zone: Spark's toPandas gives them so in the session's zone (UTC),
    the evidence's come with one."""
    if isinstance(times, pd.Timestamp):
        return times.tz_convert("UTC").tz_localize(None) if times.tzinfo else times
    return times.dt.tz_convert("UTC").dt.tz_localize(None) if times.dt.tz is not None else times


def cost_columns(
    found: Iterable[Evidence], samples: pd.DataFrame, champion: str | None
) -> list[tuple[float | None, float | None]]:
    """Per challenger's evidence, (champion, challenger) CPU seconds per 1,000 requests over the
    evidence's evaluation period; the champion is the evidence's, or without labelled requests the
    given one (the model that scored as champion last)."""
    return [
        (
            cpu_per_1000(samples, e.champion or champion or "", e.evaluated_from, e.evaluated_to),
            cpu_per_1000(samples, e.challenger, e.evaluated_from, e.evaluated_to),
        )
        for e in found
    ]
