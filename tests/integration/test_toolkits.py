"""Any MLflow pyfunc model scores through the same job: scikit-learn, LightGBM and a custom PythonModel."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from jobs import featurize, score
from models.registry import pin
from rdv.config import load_config
from rdv.demo.train import training_frame
from rdv.operations.model_configs import add_model_config
from tests.fixtures.registry import register_code_model, register_lightgbm
from tests.integration.helpers import fresh_events, stop_all, wait_for
from tests.integration.kafka_io import consume, produce

URIS = {"champion": "models:/fraud@champion"}


def test_scikit_learn_lightgbm_and_a_custom_python_model_score_every_request_as_they_would_offline(spark, config):
    frame = training_frame(spark, config, 2000, seed=5, drift_at=0.5)
    versions = {
        "lightgbm": register_lightgbm(config.tracking_uri, "toolkit-lightgbm", frame, frame["is_fraud"]),
        "custom": register_code_model(config.tracking_uri, "toolkit-custom", "amount_rule.py"),
    }
    uris = {
        **URIS,
        "lightgbm": f"models:/toolkit-lightgbm/{versions['lightgbm']}",
        "custom": f"models:/toolkit-custom/{versions['custom']}",
    }
    for name in ("lightgbm", "custom"):
        add_model_config(config, name, uris[name], role="challenger")
    config = load_config(config.conf_dir)
    pinned = {
        name: (p.registered_model, p.version)
        for name, p in ((name, pin(uri, config.tracking_uri)) for name, uri in uris.items())
    }

    queries = [featurize.build(spark, config), *[score.build(spark, config, name) for name in uris]]
    try:
        events = fresh_events(20, seed=4)  # stamped once the queries run, so none arrives too old
        produce(config.kafka.bootstrap_servers, config.kafka.topics.raw.name, events)
        scores = wait_for(
            lambda: consume(config.kafka.bootstrap_servers, config.kafka.topics.scores.name, idle_ms=1000),
            lambda s: len(s) >= 3 * len(events),
            "a score per request of each toolkit's model",
        )
    finally:
        stop_all(queries)

    requests = [
        r for r in consume(config.kafka.bootstrap_servers, config.kafka.topics.features.name) if r["kind"] == "request"
    ]
    features = pd.DataFrame([r["features"] for r in requests], index=[r["request_id"] for r in requests])
    assert len(scores) == 3 * len(events)
    for name, uri in uris.items():
        served = {s["request_id"]: s for s in scores if s["model"] == name}
        assert set(served) == set(features.index), name
        assert all(s.get("error") is None for s in served.values()), name
        model = mlflow.pyfunc.load_model(uri)
        inputs = model.metadata.get_input_schema().input_names()
        offline = np.asarray(model.predict(features[inputs]), dtype="float64")
        offline = offline[:, -1] if offline.ndim == 2 else offline
        online = np.array([served[request_id]["score"] for request_id in features.index])
        np.testing.assert_allclose(online, offline, rtol=1e-9, err_msg=name)
        assert {(s["registered_model"], s["model_version"]) for s in served.values()} == {pinned[name]}, name
