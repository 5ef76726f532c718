"""Train the demo's champion and challenger and register them in MLflow with their aliases.

Training features come from the features job's own transform (features.transform.check_raw) run
over the generated raw events, so the models see exactly what they will be served.
"""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from features.personal_key import personal_data_key
from features.transform import check_raw
from rdv.config import PipelineConfig
from rdv.demo.generator import generate_events, raw_json

log = logging.getLogger(__name__)

REGISTERED_MODEL = "fraud"
# The share of the training events before the drift: the champion learns from those only, the
# challenger from all of them, so it has seen the new pattern (and the demo's comparison shows it).
TRAINING_DRIFT_AT = 0.7
EXPERIMENT = "rendezvous-demo"
CHAMPION_FEATURES = ["log_amount", "amount_ratio", "distance_km", "is_foreign", "is_night"]


def training_frame(spark: SparkSession, config: PipelineConfig, n: int, seed: int, drift_at: float):
    """Canonical features and labels of n generated events, computed by the features job's transform
    (each event arriving when it happened)."""
    events = generate_events(n, seed=seed, drift_at=drift_at)
    rows = [
        (value, "training", 0, i, time.to_pydatetime())
        for i, (value, time) in enumerate(zip(raw_json(events), pd.to_datetime(events["event_time"])))
    ]
    # In slices of 2,000 events (about 800 KB): a task carries its slice, and Spark warns above 1 MB.
    slices = spark.sparkContext.parallelize(rows, len(rows) // 2_000 + 1)
    raw = spark.createDataFrame(slices, "value string, topic string, partition int, offset long, timestamp timestamp")
    key = personal_data_key(config.spec, config.feature_spec_file)
    requests = check_raw(raw, config.spec, key=key).where(F.col("reason").isNull())
    frame = pd.DataFrame(requests.select("request_id", "features.*").toPandas())
    return frame.merge(events[["request_id", "is_fraud"]], on="request_id")


# Types our own HistGradientBoosting model is made of; MLflow's skops format asks us to vouch for them.
_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def _log_and_register(client: MlflowClient, model, columns: list[str], frame, run_name: str) -> str:
    example = frame[columns].head(3)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({"features": ",".join(columns), "rows": len(frame)})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=example,
            # The outputs the model job scores by: inferred from predict, they would be the integer
            # labels, and MLflow would warn about integer columns.
            signature=infer_signature(example, model.predict_proba(example)),
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=_TRUSTED_TYPES,
        )
    # Through the client, which returns what it did; mlflow's fluent registration prints each step.
    try:
        client.get_registered_model(REGISTERED_MODEL)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(REGISTERED_MODEL)
    version = client.create_model_version(
        REGISTERED_MODEL, info.model_uri, run_id=run.info.run_id, model_id=info.model_id
    )
    return str(version.version)


def demo_models_registered(config: PipelineConfig) -> bool:
    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    try:
        aliases = client.get_registered_model(REGISTERED_MODEL).aliases
    except mlflow.exceptions.MlflowException:
        return False
    return {"champion", "challenger"} <= set(aliases)


def train_demo_models(
    spark: SparkSession, config: PipelineConfig, rows: int = 20_000, seed: int = 11
) -> dict[str, str]:
    """Train, evaluate before and after the drift, register; returns alias -> version."""
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    artifacts = config.path(config.mlflow.artifact_root)
    artifacts.mkdir(parents=True, exist_ok=True)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(EXPERIMENT)

    frame = training_frame(spark, config, rows, seed, drift_at=TRAINING_DRIFT_AT)
    position = frame["request_id"].str.rsplit("-", n=1).str[1].astype(int)  # generated ids end in the event's index
    old = frame[position < int(rows * TRAINING_DRIFT_AT)]
    everything = list(config.spec.features)
    champion = LogisticRegression(max_iter=500).fit(old[CHAMPION_FEATURES], old["is_fraud"])
    challenger = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(
        frame[everything], frame["is_fraud"]
    )

    test = training_frame(spark, config, 6_000, seed + 1, drift_at=0.5)
    halves = (test.iloc[: len(test) // 2], test.iloc[len(test) // 2 :])
    for name, model, columns in (("champion", champion, CHAMPION_FEATURES), ("challenger", challenger, everything)):
        aucs = [roc_auc_score(h["is_fraud"], model.predict_proba(h[columns])[:, 1]) for h in halves]
        log.info("%s: ROC AUC %.3f before the drift, %.3f after", name, *aucs)

    client = MlflowClient()
    versions = {
        "champion": _log_and_register(client, champion, CHAMPION_FEATURES, old, "champion-logreg"),
        "challenger": _log_and_register(client, challenger, everything, frame, "challenger-gbt"),
    }
    for alias, version in versions.items():
        client.set_registered_model_alias(REGISTERED_MODEL, alias, version)
    return versions
