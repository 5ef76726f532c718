"""Guarded promotion against a real MLflow registry and real Delta tables (comparison/promotion.py).

The tables hold scores as the recorder writes them, phase by phase, each phase's event times after
the change of champion before it, as a live pipeline's would be. Between phases, the roles and
versions the models score with follow the registry's aliases, as the model jobs do. The pipeline's
jobs themselves are not needed for what is checked here: which alias moves, when, and what is
recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from comparison.compare import compare
from comparison.labels import LABEL_ROW
from comparison.promotion import TABLE, promote_if_due
from comparison.tables import model_rows
from models.registry import BY_COMPARE, BY_PERSON, ROLLED_BACK_TAG, current_version, registry_client
from rdv import commands
from rdv.config import load_config
from tests.fixtures.comparison_rows import RESULTS, SCORES
from tests.fixtures.registry import register_code_model
from tests.helpers import make_config

NAME = "guarded"  # a registered model of this module's own: the session's `fraud` keeps its aliases
N = 400  # labelled requests per phase
PROMOTE = {
    "enabled": True,
    "cooldown": "1 hour",
    "watch": "1 hour",
}


def phase(spark, config, prefix: str, start: datetime, strong: str) -> None:
    """N labelled requests from start on, scored by both models with the roles and versions their
    aliases name now; `strong` (champion or challenger) is the one whose scores follow the truth."""
    rng = np.random.default_rng(len(prefix))
    truth = (rng.random(N) < 0.3).astype(int)
    times = [start + timedelta(milliseconds=150 * i) for i in range(N)]
    ids = [f"{prefix}-{i:04d}" for i in range(N)]
    frames = []
    for model in ("champion", "challenger"):
        signal = 0.5 if model == strong else 0.02
        score = np.clip(0.3 + signal * truth + rng.normal(0, 0.15, N), 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "request_id": ids,
                    "event_time": times,
                    "model": model,
                    "role": model,
                    "model_version": current_version(f"models:/{NAME}@{model}", config.tracking_uri),
                    "score": score,
                    "label": (score >= 0.5).astype("int32"),
                    "error": None,
                    "latency_ms": 900,
                    "in_time": True,
                    "scored_at": [t + timedelta(seconds=1) for t in times],
                }
            )
        )
    scores = pd.concat(frames, ignore_index=True)
    answers = frames[0].assign(sla_met=True, published_at=frames[0]["scored_at"])
    labels = pd.DataFrame({"request_id": ids, "label": truth.astype(float), "labelled_at": times, "source": "test"})
    labels["recorded_at"] = datetime.now(UTC)
    for table, frame, schema in (
        ("scores", scores, SCORES),
        ("results", answers[[c.split()[0] for c in RESULTS.split(", ")]], RESULTS),
        ("labels", labels, LABEL_ROW),
    ):
        spark.createDataFrame(frame, schema).write.format("delta").mode("append").save(config.table(table))


def step(spark, config):
    """The promotion step alone, over the tables as they are now."""
    read = {name: spark.read.format("delta").load(config.table(name)) for name in ("scores", "results", "labels")}
    return promote_if_due(spark, config, model_rows(read["scores"], read["results"]), read["labels"], datetime.now(UTC))


def aliases(config) -> tuple[str, str]:
    return tuple(
        current_version(f"models:/{NAME}@{alias}", config.tracking_uri) for alias in ("champion", "challenger")
    )


def with_promote(config, **settings):
    """The conf again, with compare.promote's settings changed in its file."""
    path = config.conf_dir / "pipeline.yaml"
    data = yaml.safe_load(path.read_text())
    data["compare"]["promote"] = {**data["compare"].get("promote", {}), **settings}
    path.write_text(yaml.safe_dump(data))
    return load_config(config.conf_dir)


@pytest.fixture
def config(tmp_path, registry):
    first, second = (register_code_model(registry, NAME, "amount_rule.py") for _ in range(2))
    client = registry_client(registry)
    client.set_registered_model_alias(NAME, "champion", first)
    client.set_registered_model_alias(NAME, "challenger", second)
    config = make_config(
        tmp_path,
        mlflow={"tracking_uri": registry},
        compare={"window": "1 minute", "recommend": {"min_labelled": 100, "resamples": 300}},
    )
    for model in ("champion", "challenger"):
        (config.conf_dir / "models" / f"{model}.yaml").write_text(f"uri: models:/{NAME}@{model}\noutput: probability\n")
    return load_config(config.conf_dir)


def test_a_better_challenger_is_promoted_only_when_enabled_and_a_worse_champion_is_rolled_back(spark, config):
    first, second = aliases(config)
    phase(spark, config, "before", datetime.now(UTC) - timedelta(minutes=5), strong="challenger")

    # Off, as shipped: the recommendation says promote, and nothing moves.
    said: list[str] = []
    compare(spark, config, echo=said.append)
    (verdict,) = spark.read.format("delta").load(config.table("comparison_tests")).collect()
    assert verdict.recommendation == "promote"
    assert aliases(config) == (first, second) and not any("promot" in line for line in said[1:]), said
    assert not DeltaTable.isDeltaTable(spark, config.table(TABLE))

    # On: the challenger's version becomes the champion, with its evidence on record.
    config = with_promote(config, **PROMOTE)
    said = []
    compare(spark, config, echo=said.append)
    assert aliases(config) == (second, first)
    assert f"promote: promoted {NAME} version {second} (challenger)" in "\n".join(said), said
    (promoted,) = spark.read.format("delta").load(config.table(TABLE)).collect()
    assert (promoted.action, promoted.by, promoted.from_version, promoted.to_version, promoted.model) == (
        "promote",
        BY_COMPARE,
        first,
        second,
        "challenger",
    )
    assert promoted.labelled == N and 0 < promoted.ci_low < promoted.effect < promoted.ci_high
    assert promoted.in_time_to == promoted.in_time_from == 1.0 and promoted.error_share == 0.0
    assert "roll back when the previous champion is better" in promoted.rule

    # Within the watch, the new champion does worse than the previous one, which scores as the challenger.
    phase(spark, config, "promoted", promoted.at + timedelta(seconds=1), strong="challenger")
    done = step(spark, config)
    assert done.change is not None and done.change.action == "rollback", done.lines
    assert aliases(config) == (first, second)
    tags = registry_client(config.tracking_uri).get_model_version(NAME, second).tags
    assert ROLLED_BACK_TAG in tags
    rollback = spark.read.format("delta").load(config.table(TABLE)).where(F.col("action") == "rollback").first()
    assert (rollback.by, rollback.from_version, rollback.to_version, rollback.model) == (
        BY_COMPARE,
        second,
        first,
        "challenger",
    )
    assert rollback.reason.startswith("the previous champion is better on roc_auc") and rollback.effect > 0

    # Within the cooldown nothing moves; past it, the rolled-back version is held back although better.
    phase(spark, config, "rolled-back", rollback.at + timedelta(seconds=1), strong="challenger")
    assert step(spark, config).lines[0].startswith("the last change of champion was at")
    config = with_promote(config, cooldown="0 seconds")
    held = step(spark, config)
    assert held.change is None and held.lines == [
        f"held back: challenger: version {second} was rolled back; `rdv promote` by a person clears it"
    ]

    # A person's promotion clears it, and goes on record too; the watch starts again.
    assert commands.main(["--conf", str(config.conf_dir), "promote", NAME, second]) == 0
    assert ROLLED_BACK_TAG not in registry_client(config.tracking_uri).get_model_version(NAME, second).tags
    watching = step(spark, config)
    assert watching.change is None and "no score of the previous champion since the change yet" in watching.lines[0]
    changes = spark.read.format("delta").load(config.table(TABLE)).orderBy("at").collect()
    assert [(c.action, c.by, c.to_version) for c in changes] == [
        ("promote", BY_COMPARE, second),
        ("rollback", BY_COMPARE, first),
        ("promote", BY_PERSON, second),
    ]
