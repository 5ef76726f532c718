"""Per window and model, what each model did on the same requests: the comparison table.

Every model scored every request, and the served answer (what the business got) is one more
"model" here, named `served`, so one aggregation describes them all: how many requests, how
many failed, how often in time, how fast, how often they agree with the champion, and, on the
requests whose label is in, the task's metrics. The counting is Spark SQL; the metrics run per
(window, model) group in vectorised numpy (comparison/metrics.py), the same code the bootstrap uses.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType, TimestampType

from comparison.metrics import evaluate

SERVED = "served"


def model_rows(scores: DataFrame, results: DataFrame) -> DataFrame:
    """Every score of the Delta table `scores` and every answer of `results` (as model `served`),
    as (request_id, event_time, model, role, model_version, score, decision, error, latency_ms,
    in_time, scored_at). A served answer is in time when it reached rdv.results within the
    request's deadline; its latency is from the event to then."""
    models = scores.select(
        "request_id",
        "event_time",
        "model",
        "role",
        "model_version",
        "score",
        F.col("label").alias("decision"),
        "error",
        "latency_ms",
        "in_time",
        "scored_at",
    )
    served = results.select(
        "request_id",
        "event_time",
        F.lit(SERVED).alias("model"),
        F.lit(SERVED).alias("role"),
        F.lit(None).cast("string").alias("model_version"),
        "score",
        F.col("label").alias("decision"),
        F.lit(None).cast("string").alias("error"),
        "latency_ms",
        F.col("sla_met").alias("in_time"),
        F.col("published_at").alias("scored_at"),
    )
    return models.unionByName(served)


def windowed(rows: DataFrame, window_ms: int) -> DataFrame:
    """rows with the window_start and window_end of their event time."""
    window = F.window("event_time", f"{window_ms} milliseconds")
    return (
        rows.withColumn("_w", window)
        .select("*", F.col("_w.start").alias("window_start"), F.col("_w.end").alias("window_end"))
        .drop("_w")
    )


def champion_answers(rows: DataFrame) -> DataFrame:
    """Per request, the score and decision of the model that was the champion when it scored it."""
    return rows.where((F.col("role") == "champion") & F.col("error").isNull()).select(
        "request_id",
        F.col("model").alias("champion"),
        F.col("score").alias("champion_score"),
        F.col("decision").alias("champion_decision"),
    )


def _service(rows: DataFrame) -> DataFrame:
    latency = F.percentile_approx("latency_ms", [0.5, 0.95, 0.99], 10_000)
    return (
        rows.groupBy("window_start", "window_end", "model")
        .agg(
            # A promotion changes a model's role within a window: the latest one is shown.
            F.max_by("role", "scored_at").alias("role"),
            F.array_join(F.array_sort(F.collect_set("model_version")), ",").alias("model_versions"),
            F.count_distinct("request_id").alias("requests"),
            F.count("error").alias("errors"),
            F.avg(F.col("in_time").cast("double")).alias("in_time_rate"),
            latency.alias("_latency"),
        )
        .select("*", *[F.col("_latency")[i].alias(f"latency_p{p}_ms") for i, p in enumerate((50, 95, 99))])
        .drop("_latency")
    )


def _agreement(rows: DataFrame, champions: DataFrame) -> DataFrame:
    paired = rows.where(F.col("error").isNull()).join(champions, "request_id")
    return paired.groupBy("window_start", "model").agg(
        F.count("*").alias("paired_with_champion"),
        F.avg((F.col("decision") == F.col("champion_decision")).cast("double")).alias("agreement"),
        F.avg(F.abs(F.col("score") - F.col("champion_score"))).alias("mean_abs_score_difference"),
    )


def _quality_schema(metrics: tuple[str, ...]) -> StructType:
    return StructType(
        [
            StructField("window_start", TimestampType()),
            StructField("model", StringType()),
            StructField("labelled", LongType()),
        ]
        + [StructField(m, DoubleType()) for m in metrics]
    )


def labelled_rows(rows: DataFrame, labels: DataFrame) -> DataFrame:
    """The rows without error whose request has a label, with it as `truth`."""
    return rows.where(F.col("error").isNull()).join(
        labels.select("request_id", F.col("label").alias("truth")), "request_id"
    )


def _quality(rows: DataFrame, labels: DataFrame, metrics: tuple[str, ...]) -> DataFrame:
    def compute(frame: pd.DataFrame) -> pd.DataFrame:
        truth, score = frame["truth"].to_numpy(float), frame["score"].to_numpy(float)
        decision = frame["decision"].to_numpy(float, na_value=float("nan"))
        values = {m: float(evaluate(m, truth, score, decision)) for m in metrics}
        return pd.DataFrame(
            [
                {
                    "window_start": frame["window_start"].iloc[0],
                    "model": frame["model"].iloc[0],
                    "labelled": len(frame),
                    **values,
                }
            ]
        )

    columns = labelled_rows(rows, labels).select("window_start", "model", "truth", "score", "decision")
    return columns.groupBy("window_start", "model").applyInPandas(compute, _quality_schema(metrics))


def comparison_table(rows: DataFrame, labels: DataFrame, window_ms: int, metrics: tuple[str, ...]) -> DataFrame:
    """One row per window and model (model_rows), ordered by window and model."""
    rows = windowed(rows, window_ms)
    champions = champion_answers(rows)
    return (
        _service(rows)
        .join(_agreement(rows, champions), ["window_start", "model"], "left")
        .join(_quality(rows, labels, metrics), ["window_start", "model"], "left")
        .withColumn("labelled", F.coalesce("labelled", F.lit(0)))
        .orderBy("window_start", "model")
    )


def agreement_matrix(rows: DataFrame) -> DataFrame:
    """For every pair of models (the served answer too): on how many requests both gave a decision,
    and how often it was the same one."""
    decided = rows.where(F.col("error").isNull() & F.col("decision").isNotNull()).select(
        "request_id", "model", "decision"
    )
    a, b = decided.alias("a"), decided.alias("b")
    return (
        a.join(b, "request_id")
        .groupBy(F.col("a.model").alias("model"), F.col("b.model").alias("other"))
        .agg(
            F.count("*").alias("paired"),
            F.avg((F.col("a.decision") == F.col("b.decision")).cast("double")).alias("agreement"),
        )
        .orderBy("model", "other")
    )
