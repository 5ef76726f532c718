"""Scoring canonical feature records with an MLflow pyfunc model in an iterator pandas UDF.

The model is loaded once per Python worker (workers are reused across tasks and micro-batches)
and every score is stamped with the model's name, version and role and the time it was made,
so the rendezvous can tell whether it came in time and every stored score is traceable.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

from features.spec import FEATURES, POLICY_STRUCT
from models.registry import ResolvedModel
from rdv.config import ConfigError, ModelConfig

Output = Literal["probability", "label", "regression"]

# One message on rdv.scores: a model's answer to one request, with the request's context.
SCORE_RECORD = StructType(
    [
        StructField("request_id", StringType()),
        StructField("model", StringType()),
        StructField("model_version", StringType()),
        StructField("role", StringType()),
        StructField("score", DoubleType()),
        StructField("label", IntegerType()),
        StructField("scored_at", TimestampType()),
        StructField("event_time", TimestampType()),
        StructField("policy", POLICY_STRUCT),
    ]
)

# Loaded models of this Python worker, by the directory name the driver shipped them under.
_loaded: dict[str, object] = {}


def _model(shipped_name: str):
    if shipped_name not in _loaded:
        import mlflow.pyfunc
        from pyspark import SparkFiles

        _loaded[shipped_name] = mlflow.pyfunc.load_model(SparkFiles.get(shipped_name))
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


def scorer(shipped_name: str, columns: list[str], output: Output, threshold: float):
    """The pandas UDF that scores a struct of features into (score, label, scored_at)."""

    @pandas_udf("score double, label int, scored_at timestamp")
    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _model(shipped_name)
        for features in batches:
            scores = predictions_to_scores(model.predict(features[columns]), output, threshold)
            scores["scored_at"] = pd.Timestamp.now(tz="UTC")
            yield scores

    return score


def score_requests(requests: DataFrame, model: ResolvedModel, score_udf) -> DataFrame:
    """One score record per request: the model's answer plus the request context the rendezvous needs."""
    scored = requests.withColumn("s", score_udf(F.col("features")))
    return scored.select(
        "request_id",
        F.lit(model.name).alias("model"),
        F.lit(model.version).alias("model_version"),
        F.lit(model.role).alias("role"),
        F.col("s.score").alias("score"),
        F.col("s.label").alias("label"),
        F.col("s.scored_at").alias("scored_at"),
        "event_time",
        "policy",
    )



def feature_columns(model: ModelConfig, conf_dir) -> list[str]:
    """The canonical features a model reads, checked before its job starts rather than at scoring."""
    columns = list(model.features or FEATURES)
    unknown = [c for c in columns if c not in FEATURES]
    if unknown:
        raise ConfigError(
            f"{conf_dir}/models/{model.name}.yaml: features: unknown feature(s) {', '.join(unknown)}; "
            f"the canonical features are {', '.join(FEATURES)}"
        )
    return columns
