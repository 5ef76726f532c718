"""A challenger that raises, returns NaN, is slow or dies (and stays dead) changes no champion decision, and while it
runs delays no answer past the deadline; its failures are visible in `scores`, not dropped.

One pipeline runs all four faulty challengers next to the champion (the slow and the dying one
as spark-submit jobs of their own, as production runs models), and each case is asserted on
what it left in the tables.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from comparison.compare import compare
from rdv.config import PipelineConfig, load_config
from rdv.operations import runner
from rdv.operations.model_configs import add_model_config, model_rows
from tests.e2e.helpers import send_and_wait, table_rows, warm_up
from tests.fixtures.registry import register_code_model
from tests.helpers import make_config

EVENTS = 40  # per phase: before and after the dying challenger is killed
DEADLINE_MS = 20_000  # two cores run five Spark applications here; the slow model sleeps past this
SLOW_S = 25
PHASES = ("alive-", "dead-")  # request ids of the two phases; the warm-up's are not asserted on


@dataclass
class Run:
    config: PipelineConfig
    results: pd.DataFrame
    scores: pd.DataFrame
    features: pd.DataFrame  # the canonical features of each request, from the decoy's archive
    models: dict[str, dict]  # `rdv model list` at the end
    served: pd.Series  # requests per model in the comparison table of `rdv compare`, all windows


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory, broker, registry) -> Run:
    config = make_config(
        tmp_path_factory.mktemp("isolation"),
        models=("champion",),
        profile_override="cluster",
        mlflow={"tracking_uri": registry},
        policy={"deadline_ms": DEADLINE_MS},
        rendezvous={"max_deadline_ms": DEADLINE_MS, "grace": "3 seconds"},
    )
    for fault, settings in (("raises", {}), ("nan", {}), ("slow", {"sleep_s": SLOW_S})):
        version = register_code_model(registry, f"faulty-{fault}", "faulty.py", {"fault": fault, **settings})
        add_model_config(config, fault, f"models:/faulty-{fault}/{version}", role="challenger")
    add_model_config(config, "dying", "models:/fraud@challenger")
    config = load_config(config.conf_dir)
    runner.up(config, ["champion", "raises", "nan"])
    try:
        runner.start_model(config, "slow")
        runner.start_model(config, "dying")
        # Every job's first micro-batch (Python workers, model loading) is over before the asserted
        # phases: on two cores it would otherwise compete with the champion's scoring.
        warm_up(spark, config, ["champion", "raises", "nan", "slow", "dying"])
        send_and_wait(spark, config, "alive", EVENTS, ["champion", "raises", "nan", "slow", "dying"])
        # Killed for good: the supervisor starts it again, and each start fails on a version the
        # registry does not have, so it stays dead with its restarts on record.
        (config.conf_dir / "models" / "dying.yaml").write_text("uri: models:/fraud/999\nrole: challenger\n")
        os.killpg(runner.running_jobs(config)["score-dying"], signal.SIGKILL)
        send_and_wait(spark, config, "dead", EVENTS, ["champion", "raises", "nan", "slow"], seed=8)
        archive = pd.concat([table_rows(spark, config, "archive", prefix) for prefix in PHASES])
        features = pd.DataFrame([json.loads(m)["features"] for m in archive["message"]], index=archive["request_id"])
        compare(spark, config, echo=lambda *_: None)
        comparison = spark.read.format("delta").load(config.table("comparison")).toPandas()
        yield Run(
            config,
            *[
                pd.concat([table_rows(spark, config, table, prefix) for prefix in PHASES])
                for table in ("results", "scores")
            ],
            features,
            {row["model"]: row for row in model_rows(load_config(config.conf_dir))},  # as `rdv model list` reads it
            comparison.groupby("model")["requests"].sum(),
        )
    finally:
        runner.down(config)


def assert_no_faulty_challenger_changed_or_held_back_an_answer(run: Run) -> None:
    """Every request is answered once. While the four faulty challengers run (the alive phase: one
    raises, one returns NaN, one sleeps past the deadline, one is about to die), the champion
    scores every request in time, and every answer is the champion's, as preferred, published
    within the deadline.

    After the dying challenger is killed, the supervisor starts it again and again, each start a
    spark-submit JVM on two cores that fails on a version the registry does not have, until it
    gives up (supervisor.max_failures). Those starts have delayed champion scores past the deadline
    (8 of 40 requests in a CI run on 2026-12-04), so in that phase a late champion is allowed; its
    requests are answered as the policy says: a challenger's score in time, else a late one, else
    the default, and never an error record. Wherever the champion was in time, the answer is its."""
    results = run.results.set_index("request_id")
    assert sorted(results.index) == sorted(run.features.index) and len(results) == 2 * EVENTS
    scores = run.scores.set_index(["request_id", "model"])
    champion = scores.xs("champion", level="model").reindex(results.index)
    in_time = champion["in_time"].fillna(False).astype(bool)
    alive = results.index.str.startswith("alive-")
    assert in_time[alive].all(), f"the champion missed the deadline for {list(in_time[alive & ~in_time].index)}"
    assert results.loc[alive, "sla_met"].all(), results[alive & ~results["sla_met"]]

    kept = results[in_time]
    assert (kept["model"] == "champion").all() and (kept["reason"] == "preferred").all() and kept["in_time"].all()
    np.testing.assert_array_equal(kept["score"], champion.loc[kept.index, "score"])

    late = results[~in_time]
    assert late["reason"].isin(["fallback", "default"]).all(), late
    for request_id, answer in late[late["reason"] == "fallback"].iterrows():
        chosen = scores.loc[(request_id, answer["model"])]
        assert pd.isna(chosen["error"]) and chosen["score"] == answer["score"], (request_id, answer)


def scores_of(run: Run, model: str) -> pd.DataFrame:
    scores = run.scores[run.scores["model"] == model].set_index("request_id")
    assert scores.index.is_unique
    return scores


def test_a_challenger_that_raises_on_some_rows_fails_only_those_and_says_so(run):
    assert_no_faulty_challenger_changed_or_held_back_an_answer(run)
    scores = scores_of(run, "raises").reindex(run.features.index)
    raises = run.features["card_present"] == 0
    assert 0 < raises.sum() < len(raises)
    assert (scores.loc[raises, "error"] == "raised ValueError: faulty model: no answer without the card").all()
    assert scores.loc[raises, "score"].isna().all()
    assert scores.loc[~raises, "error"].isna().all() and scores.loc[~raises, "score"].notna().all()


def test_a_challenger_that_returns_nan_has_error_records_not_scores(run):
    assert_no_faulty_challenger_changed_or_held_back_an_answer(run)
    scores = scores_of(run, "nan").reindex(run.features.index)
    nan = run.features["card_present"] == 1
    assert 0 < nan.sum() < len(nan)
    assert (scores.loc[nan, "error"] == "not_finite: nan").all() and scores.loc[nan, "score"].isna().all()
    assert scores.loc[~nan, "error"].isna().all() and scores.loc[~nan, "score"].notna().all()


def test_a_slow_challenger_scores_every_request_late_and_delays_no_answer(run):
    assert_no_faulty_challenger_changed_or_held_back_an_answer(run)
    scores = scores_of(run, "slow")
    assert sorted(scores.index) == sorted(run.features.index)
    assert scores["late"].all() and scores["error"].isna().all()


def test_a_challenger_whose_job_dies_is_missing_from_the_scores_and_shown_as_not_running(run):
    assert_no_faulty_challenger_changed_or_held_back_an_answer(run)
    scores = scores_of(run, "dying")
    assert scores.index.str.startswith("alive-").sum() == EVENTS
    assert not scores.index.str.startswith("dead-").any()
    dying = run.models["dying"]
    assert dying["running"].startswith("no, ") and "restart(s), last exit" in dying["running"], dying
    assert dying["version"] == "not in the registry"
    # The comparison shows the gap: the dead challenger scored the warm-up and the first phase only.
    assert run.served["dying"] == run.served["champion"] - EVENTS
    assert run.models["slow"]["running"].startswith("yes, pid")
