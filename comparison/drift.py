"""Has the input moved? The population stability index of every feature and every model's scores,
per window, against a reference window.

The canary (an old model pinned for good) is scored like any model, so its score distribution is a
drift baseline that no promotion moves. A numeric value is binned at the reference's deciles (as
many as `drift.bins` asks for, fewer where values repeat); a string is its own bin. Counting is
Spark SQL; the index, over a few bins per window and name, is computed from the counts.

PSI = sum over bins of (p - q) * ln(p / q), with p the window's share of a bin and q the reference's,
each at least 1e-4 so that an empty bin counts as rare rather than impossible. Under 0.1 the
distributions are usually read as the same, above 0.25 as clearly shifted.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType, StructType

from comparison.tables import windowed
from rdv.config import DriftConfig

FLOOR = 1e-4


def feature_values(archive: DataFrame) -> DataFrame:
    """Archive rows as (event_time, kind, name, number, text): one row per request and feature."""
    features = archive.schema["features"].dataType
    assert isinstance(features, StructType)  # the archive's features are a struct (features.records)
    values = [
        F.struct(
            F.lit(f.name).alias("name"),
            (
                F.col("features")[f.name].cast("double")
                if isinstance(f.dataType, NumericType)
                else F.lit(None).cast("double")
            ).alias("number"),
            (
                F.lit(None).cast("string")
                if isinstance(f.dataType, NumericType)
                else F.col("features")[f.name].cast("string")
            ).alias("text"),
        )
        for f in features.fields
    ]
    return archive.select("event_time", F.lit("feature").alias("kind"), F.explode(F.array(*values)).alias("v")).select(
        "event_time", "kind", "v.*"
    )


def score_values(rows: DataFrame) -> DataFrame:
    """Model rows (comparison/tables.model_rows) without the served answer, as score values."""
    return rows.where(F.col("error").isNull() & (F.col("role") != "served")).select(
        "event_time",
        F.lit("score").alias("kind"),
        F.col("model").alias("name"),
        F.col("score").alias("number"),
        F.lit(None).cast("string").alias("text"),
    )


def _reference(values: DataFrame, config: DriftConfig, window_ms: int) -> DataFrame:
    """The rows of the reference: the configured interval, or for "first" each name's first window's
    length of event time from its first value on (not its first calendar window, which may hold
    only the last few seconds of it)."""
    if config.reference == "first":
        first = values.groupBy("kind", "name").agg(F.min("event_time").alias("reference_start"))
        end = F.col("reference_start") + F.make_dt_interval(secs=F.lit(window_ms / 1000.0))
        return values.join(first, ["kind", "name"]).where(F.col("event_time") < end).drop("reference_start")
    start_at, end_at = (datetime.fromisoformat(t) for t in config.reference.split("/"))
    return values.where((F.col("event_time") >= F.lit(start_at)) & (F.col("event_time") < F.lit(end_at)))


def binned(values: DataFrame, reference: DataFrame, bins: int) -> DataFrame:
    """values with a `bin`: for a number, how many of the reference's quantile edges are below it;
    for a string, the string."""
    quantiles = [i / bins for i in range(1, bins)]
    edges = (
        reference.where(F.col("number").isNotNull())
        .groupBy("kind", "name")
        .agg(F.array_distinct(F.array_sort(F.percentile_approx("number", quantiles, 10_000))).alias("edges"))
    )
    number_bin = F.size(F.filter("edges", lambda edge: edge < F.col("number"))).cast("string")
    return values.join(F.broadcast(edges), ["kind", "name"], "left").withColumn(
        "bin", F.when(F.col("number").isNotNull(), number_bin).otherwise(F.col("text"))
    )


def psi(window_counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """The population stability index of two aligned count vectors."""
    p = np.maximum(window_counts / max(window_counts.sum(), 1), FLOOR)
    q = np.maximum(reference_counts / max(reference_counts.sum(), 1), FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def _indices(window: pd.DataFrame, reference: pd.DataFrame, config: DriftConfig) -> pd.DataFrame:
    rows = []
    for (kind, name), counts in window.groupby(["kind", "name"]):
        ref = reference[(reference["kind"] == kind) & (reference["name"] == name)].set_index("bin")["rows"]
        if ref.empty:
            continue
        for (start, end), one in counts.groupby(["window_start", "window_end"]):
            mine = one.set_index("bin")["rows"]
            bins = ref.index.union(mine.index)
            index = psi(
                mine.reindex(bins, fill_value=0).to_numpy(float), ref.reindex(bins, fill_value=0).to_numpy(float)
            )
            rows.append(
                {
                    "window_start": start,
                    "window_end": end,
                    "kind": kind,
                    "name": name,
                    "rows": int(mine.sum()),
                    "psi": index,
                    "flagged": index > config.threshold and mine.sum() >= config.min_rows,
                }
            )
    return pd.DataFrame(rows)


def drift_table(values: DataFrame, window_ms: int, config: DriftConfig) -> pd.DataFrame:
    """One row per window and (kind, name) of values (feature_values, score_values): rows, psi, flagged
    (over the threshold, with at least min_rows rows), and the reference it was measured against."""
    values = windowed(values.where(F.col("number").isNotNull() | F.col("text").isNotNull()), window_ms).persist()
    try:
        reference = _reference(values, config, window_ms)
        bounds = reference.groupBy("kind", "name").agg(
            F.min("event_time").alias("reference_from"), F.max("event_time").alias("reference_to")
        )
        with_bins = binned(values, reference, config.bins)
        window = with_bins.groupBy("kind", "name", "window_start", "window_end", "bin").agg(F.count("*").alias("rows"))
        reference_bins = binned(reference, reference, config.bins)
        ref = reference_bins.groupBy("kind", "name", "bin").agg(F.count("*").alias("rows"))
        indices = _indices(window.toPandas(), ref.toPandas(), config)
        if indices.empty:
            return indices
        return indices.merge(bounds.toPandas(), on=["kind", "name"]).sort_values(["kind", "name", "window_start"])
    finally:
        values.unpersist()
