"""Scoring canonical feature records with an MLflow pyfunc model in an iterator pandas UDF.

The model is loaded once per Python worker (workers are reused across tasks and micro-batches)
and every score is stamped with the model's name, version and role and the time it was made,
so the rendezvous can tell whether it came in time and every stored score is traceable.

A model that fails is contained here, where it fails: a batch that raises is scored again row by
row, and a row that raises, or a prediction that is NaN or infinite, becomes a score record with
no score and an error saying why. So a broken challenger neither stops its job nor goes silent,
and the rendezvous never takes its output for an answer.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pyspark import SparkContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

from features.records import POLICY_STRUCT
from models.cost import UdfMeter
from models.registry import ResolvedModel
from rdv.config import ConfigError, ModelConfig
from rdv.feature_spec import FeatureSpec

Output = Literal["probability", "label", "regression"]

# One message on rdv.scores: a model's answer to one request, with the request's context.
SCORE_RECORD = StructType(
    [
        StructField("request_id", StringType()),
        StructField("model", StringType()),
        StructField("registered_model", StringType()),
        StructField("model_version", StringType()),
        StructField("role", StringType()),
        StructField("score", DoubleType()),
        StructField("label", IntegerType()),
        StructField("error", StringType()),
        StructField("scored_at", TimestampType()),
        StructField("subject", StringType()),
        StructField("event_time", TimestampType()),
        StructField("policy", POLICY_STRUCT),
    ]
)

# Loaded models of this Python worker, by the archive name the driver shipped them under.
_loaded: dict[str, object] = {}


def shipped_name(model: ResolvedModel) -> str:
    """The name a UDF loads a shipped model version by (SparkFiles.get)."""
    return model.local_dir.name + ".zip"


def ship(context: SparkContext, model: ResolvedModel) -> None:
    """Send a model version's directory to every executor.

    It goes as a zip archive, which each executor unpacks: a cluster takes no local directory
    (SparkContext.addFile of a directory works in local mode only). The archive is made once per
    version, beside its directory, and renamed into place so that a job killed while zipping
    leaves no half archive for its restart to send."""
    archive = model.local_dir.with_name(shipped_name(model))
    if not archive.exists():
        partial = Path(
            shutil.make_archive(
                str(archive.with_name(f".{archive.stem}-{os.getpid()}")), "zip", root_dir=model.local_dir
            )
        )
        partial.replace(archive)
    context.addArchive(str(archive))


def _model(shipped_name: str):
    """The model shipped under that name, loaded once per Python worker.

    Once loaded, everything the worker holds is frozen out of Python's cyclic garbage collector.
    PySpark's daemon runs gc.collect() after every task of a reused worker, and with pandas,
    pyarrow, scikit-learn and MLflow loaded a full collection took about 140 ms: 95% of the
    workers' CPU, a third of a model job's, for micro-batches of tens of rows (bench/README.md,
    "Where the time goes"). Objects made by a task are still collected after it.
    """
    if shipped_name not in _loaded:
        import mlflow.pyfunc
        from pyspark import SparkFiles

        # A job that moved to a new version (names are <model>-v<version>-<id>.zip) drops the old one,
        # so workers of a long-running job hold one version per model, not every one promoted.
        model = shipped_name.rsplit("-", 2)[0]
        gc.unfreeze()  # so that a dropped version can be collected
        for stale in [name for name in _loaded if name.rsplit("-", 2)[0] == model]:
            del _loaded[stale]
        _loaded[shipped_name] = mlflow.pyfunc.load_model(SparkFiles.get(shipped_name))
        gc.collect()
        gc.freeze()
    return _loaded[shipped_name]


def predictions_to_scores(predictions, output: Output, threshold: float) -> pd.DataFrame:
    """A model's raw predictions as (score, label): the positive-class probability for a
    classifier that gives probabilities, the class for one that gives labels, the value for a
    regressor (no label)."""
    values = np.asarray(predictions, dtype="float64")
    if values.ndim == 2:
        values = values[:, -1]
    if output == "regression":
        labels = pd.array([None] * len(values), dtype="Int32")
    elif output == "label":
        labels = pd.array(values.astype("int32"), dtype="Int32")
    else:
        labels = pd.array((values >= threshold).astype("int32"), dtype="Int32")
    return pd.DataFrame({"score": values, "label": labels})


def _row_by_row(model, features: pd.DataFrame, output: Output, threshold: float) -> pd.DataFrame:
    rows = []
    for i in range(len(features)):
        try:
            row = predictions_to_scores(model.predict(features.iloc[[i]]), output, threshold)
            if len(row) != 1:
                raise ValueError(f"returned {len(row)} predictions for one row")
            rows.append(row.assign(error=None))
        except Exception as error:  # noqa: BLE001 - any failure of the model's own code is a result
            rows.append(
                pd.DataFrame(
                    {
                        "score": [np.nan],
                        "label": pd.array([None], dtype="Int32"),
                        "error": [f"raised {type(error).__name__}: {str(error)[:300]}"],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def contained_predictions(model, features: pd.DataFrame, output: Output, threshold: float) -> pd.DataFrame:
    """(score, label, error) per row, whatever the model does: raise on some rows, return the
    wrong number of predictions, or return NaN or infinity."""
    try:
        scores = predictions_to_scores(model.predict(features), output, threshold)
        if len(scores) != len(features):
            raise ValueError(f"returned {len(scores)} predictions for {len(features)} rows")
        scores["error"] = None
    except Exception:  # noqa: BLE001 - find the rows that fail; the others keep their scores
        scores = _row_by_row(model, features, output, threshold)
    not_finite = ~np.isfinite(scores["score"]) & scores["error"].isna()
    if not_finite.any():
        scores.loc[not_finite, "error"] = "not_finite: " + scores.loc[not_finite, "score"].astype(str)
    failed = scores["error"].notna()
    scores.loc[failed, "score"] = np.nan
    scores.loc[failed, "label"] = pd.NA
    return scores


def scorer(shipped_name: str, columns: list[str], output: Output, threshold: float, meter: UdfMeter):
    """The pandas UDF that scores a struct of features into (score, label, error, scored_at), and adds
    its Python worker's CPU and the rows it scored to the meter (models/cost.py)."""

    # pyspark's overloads of pandas_udf leave out a DDL string with an iterator of DataFrames.
    @pandas_udf("score double, label int, error string, scored_at timestamp")  # type: ignore[call-overload]
    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # The worker's CPU from the task's first batch to its last, the Arrow conversions between them
        # included (they run in this process while the generator waits); not the model's loading,
        # once per worker and version, which is no request's cost.
        model = _model(shipped_name)
        started, rows = time.process_time(), 0
        try:
            for features in batches:
                scores = contained_predictions(model, features[columns], output, threshold)
                scores["scored_at"] = pd.Timestamp.now(tz="UTC")
                rows += len(scores)
                yield scores
        finally:
            meter.add(time.process_time() - started, rows)

    return score


def with_scores(requests: DataFrame, score_udf) -> DataFrame:
    """The requests with the model's (score, label, error, scored_at) as the struct `s`: one call
    of the UDF per row, however many fields of it the record takes."""
    return requests.withColumn("s", score_udf(F.col("features")))


def failed_scores(requests: DataFrame, model: ResolvedModel, error: str) -> DataFrame:
    """Score records without a score, with the error: for requests the model could not be run on."""
    failed = F.struct(
        F.lit(None).cast("double").alias("score"),
        F.lit(None).cast("int").alias("label"),
        F.lit(error).alias("error"),
        F.current_timestamp().alias("scored_at"),
    )
    return requests.withColumn("s", failed).select(*score_record_columns(model))


def score_record_columns(model: ResolvedModel) -> list[Column]:
    """SCORE_RECORD's columns over requests with the struct `s`; a model job builds them once per
    version, since each column built from Python costs py4j round trips on every micro-batch."""
    return [
        F.col("request_id"),
        F.lit(model.name).alias("model"),
        F.lit(model.registered_model).cast("string").alias("registered_model"),
        F.lit(model.version).alias("model_version"),
        F.lit(model.role).alias("role"),
        F.col("s.score").alias("score"),
        F.col("s.label").alias("label"),
        F.col("s.error").alias("error"),
        F.col("s.scored_at").alias("scored_at"),
        F.col("subject"),
        F.col("event_time"),
        F.col("policy"),
    ]


def feature_columns(model: ModelConfig, spec: FeatureSpec, conf_dir) -> list[str]:
    """The canonical features a model reads, checked before its job starts rather than at scoring:
    a feature the spec does not have (any more) fails the start, naming both files."""
    columns = list(model.features or spec.features)
    unknown = [c for c in columns if c not in spec.features]
    if unknown:
        raise ConfigError(
            f"{conf_dir}/models/{model.name}.yaml: features: {', '.join(unknown)} not in the feature spec "
            f"{conf_dir}/features.yaml, whose features are {', '.join(spec.features)}"
        )
    return columns
