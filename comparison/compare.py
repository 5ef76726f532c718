"""`rdv compare`: the comparison tables, computed again from the pipeline's Delta tables.

Reads `scores`, `results`, `labels`, `costs` and `archive`; overwrites `comparison` (per window and
model, with each model's CPU per 1,000 requests, comparison/costs.py), `comparison_tests` (the
evidence and the recommendation per challenger, with both models' CPU), `comparison_agreement`
(every pair of models) and `drift` (per window, feature and model score); with compare.promote on,
it then moves @champion under guards and appends the change to `promotions`
(comparison/promotion.py). Each is recomputed whole: labels arrive days late and change old
windows, and a Delta overwrite is one atomic commit, so a reader sees the previous run's tables or
this one's, never half of either. Earlier runs stay readable with Delta time travel.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType, TimestampType

from comparison.costs import COST_COLUMNS, cost_columns, with_costs
from comparison.drift import drift_table, feature_values, score_values
from comparison.labels import LABEL_ROW
from comparison.promotion import latest_roles, promote_if_due
from comparison.significance import evidence, evidence_rows
from comparison.tables import agreement_matrix, comparison_table, model_rows
from models.cost import COST_ROW
from rdv.catalog import register_tables
from rdv.config import ConfigError, PipelineConfig
from rdv.durations import duration_ms

EVIDENCE_ROW = StructType(
    [
        StructField(name, kind())
        for name, kind in (
            ("challenger", StringType),
            ("champion", StringType),
            ("metric", StringType),
            ("labelled", LongType),
            ("resampled", LongType),
            ("evaluated_from", TimestampType),
            ("evaluated_to", TimestampType),
            ("champion_value", DoubleType),
            ("challenger_value", DoubleType),
            ("effect", DoubleType),
            ("ci_low", DoubleType),
            ("ci_high", DoubleType),
            ("confidence", DoubleType),
            ("mcnemar_champion_only", LongType),
            ("mcnemar_challenger_only", LongType),
            ("mcnemar_statistic", DoubleType),
            ("mcnemar_p_value", DoubleType),
            ("mcnemar_method", StringType),
            ("recommendation", StringType),
            ("rule", StringType),
        )
    ]
    + [StructField(name, DoubleType()) for name in COST_COLUMNS]
)
DRIFT_ROW = StructType(
    [
        StructField(name, kind())
        for name, kind in (
            ("window_start", TimestampType),
            ("window_end", TimestampType),
            ("kind", StringType),
            ("name", StringType),
            ("rows", LongType),
            ("psi", DoubleType),
            ("flagged", BooleanType),
            ("reference_from", TimestampType),
            ("reference_to", TimestampType),
        )
    ]
)


def _read(spark: SparkSession, config: PipelineConfig, name: str) -> DataFrame | None:
    path = config.table(name)
    return spark.read.format("delta").load(path) if DeltaTable.isDeltaTable(spark, path) else None


def _overwrite(frame: DataFrame, config: PipelineConfig, name: str, computed_at: datetime) -> None:
    (
        frame.withColumn("computed_at", F.lit(computed_at))
        .write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .save(config.table(name))
    )


def compare(spark: SparkSession, config: PipelineConfig, echo=print) -> None:
    """Recompute the four tables, saying what it is at (each step reads all of the data)."""
    scores, results = _read(spark, config, "scores"), _read(spark, config, "results")
    if scores is None or results is None:
        raise ConfigError(
            f"no scores or results under {config.location(config.paths.tables)} yet: run the pipeline "
            "(`rdv up`, or `rdv demo`) before comparing its models"
        )
    labels, costs = _read(spark, config, "labels"), _read(spark, config, "costs")
    if labels is None:
        labels = spark.createDataFrame([], LABEL_ROW)
    settings, computed_at = config.compare, datetime.now(UTC)
    window_ms = duration_ms(settings.window)
    rows = model_rows(scores, results).persist()
    try:
        echo(f"compare: per window of {settings.window} and model, with each model's CPU -> comparison")
        table = comparison_table(rows, labels, window_ms, settings.metric_names)
        _overwrite(with_costs(table, costs, window_ms), config, "comparison", computed_at)
        echo(f"compare: each challenger against the champion on {settings.decisive_metric} -> comparison_tests")
        found = evidence(rows, labels, settings)
        samples = pd.DataFrame(costs.toPandas()) if costs is not None else pd.DataFrame(columns=COST_ROW.fieldNames())
        champion = next((m for m, (role, _) in latest_roles(rows).items() if role == "champion"), None)
        costs_of = cost_columns(found, samples, champion)
        tests = [(*row, *cost) for row, cost in zip(evidence_rows(found), costs_of, strict=True)]
        _overwrite(spark.createDataFrame(tests, EVIDENCE_ROW), config, "comparison_tests", computed_at)
        echo("compare: every pair of models -> comparison_agreement")
        _overwrite(agreement_matrix(rows), config, "comparison_agreement", computed_at)
        echo("compare: every feature and model score against the reference -> drift")
        values = score_values(rows)
        if (archive := _read(spark, config, "archive")) is not None:
            values = feature_values(archive).unionByName(values)
        drift = drift_table(values, window_ms, settings.drift)
        drift_rows = drift[DRIFT_ROW.fieldNames()] if len(drift) else []
        _overwrite(spark.createDataFrame(drift_rows, DRIFT_ROW), config, "drift", computed_at)
        if settings.promote.enabled:
            echo("compare: guarded promotion (compare.promote) -> promotions")
            for line in promote_if_due(spark, config, rows, labels, computed_at).lines:
                echo(f"promote: {line}")
    finally:
        rows.unpersist()
    register_tables(spark, config)
