"""The comparison table, the paired evidence and drift against scikit-learn, SciPy and numpy on the
same synthetic scores, answers and labels."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from comparison.compare import EVIDENCE_ROW
from comparison.costs import COST_COLUMNS
from comparison.drift import drift_table, psi
from comparison.metrics import mcnemar
from comparison.significance import KEEP_WATCHING, PROMOTE, RETIRE, Evidence, evidence, recommend
from comparison.tables import agreement_matrix, comparison_table, model_rows
from rdv.config import CLASSIFICATION, CompareConfig, DriftConfig, RecommendationRule
from tests.fixtures.comparison_rows import RESULTS, SCORES

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
WINDOW_MS = 60_000
N = 600  # requests, over two one-minute windows
LABELS = "request_id string, label double, labelled_at timestamp"


@pytest.fixture(scope="module")
def synthetic():
    """Champion, challenger (better) and canary scores of N requests; every third request unlabelled,
    a few challenger errors, the champion's answer served."""
    rng = np.random.default_rng(9)
    truth = (rng.random(N) < 0.25).astype(int)
    times = [START + timedelta(milliseconds=int(t)) for t in np.sort(rng.uniform(0, 2 * WINDOW_MS, N))]
    quality = {"champion": 0.15, "challenger": 0.45, "canary": 0.1}
    frames = []
    for model, signal in quality.items():
        score = np.round(np.clip(0.3 + signal * truth + rng.normal(0, 0.2, N), 0, 1), 3)
        latency = rng.integers(50, 5000, N)
        frames.append(
            pd.DataFrame(
                {
                    "request_id": [f"r{i:04d}" for i in range(N)],
                    "event_time": times,
                    "model": model,
                    "role": "canary" if model == "canary" else model,
                    "model_version": "1",
                    "score": score,
                    "label": (score >= 0.5).astype(int),
                    "error": None,
                    "latency_ms": latency,
                    "in_time": latency <= 3000,
                    "scored_at": [t + timedelta(milliseconds=int(x)) for t, x in zip(times, latency)],
                }
            )
        )
    scores = pd.concat(frames, ignore_index=True)
    failed = (scores["model"] == "challenger") & (scores.index % 97 == 0)
    scores.loc[failed, ["score", "label", "error"]] = [np.nan, None, "raised ValueError: no"]
    scores["label"] = scores["label"].astype("Int32")
    labels = pd.DataFrame(
        {
            "request_id": [f"r{i:04d}" for i in range(N) if i % 3],
            "label": truth[[i for i in range(N) if i % 3]].astype(float),
            "labelled_at": START + timedelta(days=2),
        }
    )
    return scores, labels, truth


def frames(spark, synthetic):
    scores, labels, _ = synthetic
    champion = scores[scores["model"] == "champion"]
    results = pd.DataFrame(
        {
            "request_id": champion["request_id"],
            "event_time": champion["event_time"],
            "model": "champion",
            "score": champion["score"],
            "label": champion["label"],
            "latency_ms": champion["latency_ms"] + 100,
            "sla_met": champion["latency_ms"] + 100 <= 3000,
            "published_at": champion["scored_at"],
        }
    )
    return (
        spark.createDataFrame(scores.astype(object).where(scores.notna(), None), SCORES),
        spark.createDataFrame(results.astype(object).where(results.notna(), None), RESULTS),
        spark.createDataFrame(labels, LABELS),
    )


def expected_row(group: pd.DataFrame, labels: pd.DataFrame, champion: pd.DataFrame) -> dict:
    ok = group[group["error"].isna()]
    labelled = ok.merge(labels.rename(columns={"label": "truth"}), on="request_id")
    t, s, d = labelled["truth"], labelled["score"], labelled["label"].astype(int)
    paired = ok.merge(champion, on="request_id", suffixes=("", "_champion"))
    return {
        "requests": group["request_id"].nunique(),
        "errors": group["error"].notna().sum(),
        "in_time_rate": group["in_time"].mean(),
        **{f"latency_p{p}_ms": np.percentile(group["latency_ms"], p, method="inverted_cdf") for p in (50, 95, 99)},
        "paired_with_champion": len(paired),
        "agreement": (paired["label"] == paired["label_champion"]).mean(),
        "labelled": len(labelled),
        "accuracy": sk.accuracy_score(t, d),
        "precision": sk.precision_score(t, d),
        "recall": sk.recall_score(t, d),
        "roc_auc": sk.roc_auc_score(t, s),
        "log_loss": sk.log_loss(t, s, labels=[0, 1]),
    }


def test_every_figure_of_the_comparison_table_is_what_pandas_and_scikit_learn_compute(spark, synthetic):
    scores, results, labels = frames(spark, synthetic)
    table = comparison_table(model_rows(scores, results), labels, WINDOW_MS, CLASSIFICATION).toPandas()
    assert sorted(table["model"].unique()) == ["canary", "challenger", "champion", "served"]
    assert len(table) == 8  # two windows, four models
    source, label_rows = synthetic[0], synthetic[1]
    champion = source[(source["model"] == "champion")][["request_id", "label"]]
    for row in table.itertuples():
        in_window = (source["event_time"] >= row.window_start.tz_localize("UTC")) & (
            source["event_time"] < row.window_end.tz_localize("UTC")
        )
        model = "champion" if row.model == "served" else row.model
        expected = expected_row(source[in_window & (source["model"] == model)], label_rows, champion)
        if row.model == "served":  # the answers' own latency and deadline
            answered = source[in_window & (source["model"] == "champion")]["latency_ms"] + 100
            expected.update(
                in_time_rate=(answered <= 3000).mean(),
                **{f"latency_p{p}_ms": np.percentile(answered, p, method="inverted_cdf") for p in (50, 95, 99)},
            )
        for column, value in expected.items():
            assert getattr(row, column) == pytest.approx(value, rel=1e-9), (row.model, row.window_start, column)


def test_the_agreement_matrix_counts_every_pair_on_the_requests_both_decided(spark, synthetic):
    scores, results, _ = frames(spark, synthetic)
    matrix = agreement_matrix(model_rows(scores, results)).toPandas().set_index(["model", "other"])
    source = synthetic[0]
    wide = source[source["error"].isna()].pivot(index="request_id", columns="model", values="label")
    both = wide[["champion", "challenger"]].dropna()
    assert matrix.loc[("challenger", "champion"), "paired"] == len(both)
    assert matrix.loc[("challenger", "champion"), "agreement"] == pytest.approx(
        (both["champion"] == both["challenger"]).mean()
    )
    assert matrix.loc[("served", "champion"), "agreement"] == 1.0


def test_the_evidence_is_the_paired_difference_mcnemar_and_the_rule(spark, synthetic):
    scores, results, labels = frames(spark, synthetic)
    config = CompareConfig(recommend=RecommendationRule(resamples=1000, min_labelled=100))
    (found,) = evidence(model_rows(scores, results), labels, config)
    source, label_rows, _ = synthetic
    wide = source[source["error"].isna()].pivot(index="request_id", columns="model", values=["score", "label"])
    wide.columns = [f"{value}_{model}" for value, model in wide.columns]
    pairs = wide.dropna().join(label_rows.set_index("request_id")["label"].rename("truth"), how="inner")
    t = pairs["truth"].to_numpy()
    champion_auc, challenger_auc = (sk.roc_auc_score(t, pairs[f"score_{m}"]) for m in ("champion", "challenger"))
    assert (found.challenger, found.champion, found.labelled) == ("challenger", "champion", len(pairs))
    assert found.effect == pytest.approx(challenger_auc - champion_auc, rel=1e-9)
    expected = mcnemar(t, pairs["label_champion"].to_numpy(float), pairs["label_challenger"].to_numpy(float))
    assert (found.mcnemar_champion_only, found.mcnemar_challenger_only) == (
        expected.champion_only,
        expected.challenger_only,
    )
    assert found.ci_low < found.effect < found.ci_high and found.ci_low > 0
    assert found.recommendation == PROMOTE and "interval of the roc_auc improvement" in found.rule


@pytest.mark.parametrize(
    "labelled, low, high, verdict",
    [
        (50, 0.1, 0.2, KEEP_WATCHING),  # too few labels, however clear
        (500, 0.01, 0.2, PROMOTE),
        (500, -0.01, 0.2, KEEP_WATCHING),
        (500, -0.2, -0.01, RETIRE),
        (500, float("nan"), float("nan"), KEEP_WATCHING),
    ],
)
def test_the_recommendation_rule(labelled, low, high, verdict):
    assert recommend(RecommendationRule(min_labelled=100), labelled, low, high) == verdict


def test_a_margin_asks_for_a_clearer_interval():
    assert recommend(RecommendationRule(min_labelled=100, min_effect=0.05), 500, 0.03, 0.2) == KEEP_WATCHING


def test_psi_is_the_textbook_formula():
    window, reference = np.array([30.0, 50.0, 20.0]), np.array([50.0, 40.0, 10.0])
    p, q = window / 100, reference / 100
    assert psi(window, reference) == pytest.approx(float(np.sum((p - q) * np.log(p / q))))
    assert psi(reference, reference) == 0.0


def test_drift_is_flagged_where_a_distribution_moved_and_only_there(spark):
    rng = np.random.default_rng(3)
    n = 1200
    times = [START + timedelta(milliseconds=int(t)) for t in np.linspace(0, 3 * WINDOW_MS - 1, n)]
    third = np.arange(n) >= 2 * n // 3  # the last window shifts
    values = pd.DataFrame(
        {
            "event_time": times * 3,
            "kind": ["feature"] * (3 * n),
            "name": ["steady"] * n + ["shifted"] * n + ["category"] * n,
            "number": np.concatenate([rng.normal(0, 1, n), rng.normal(np.where(third, 1.5, 0), 1), np.full(n, np.nan)]),
            "text": [None] * (2 * n)
            + list(np.where(third, rng.choice(["a", "b"], n, p=[0.2, 0.8]), rng.choice(["a", "b"], n, p=[0.8, 0.2]))),
        }
    )
    frame = spark.createDataFrame(
        values.astype(object).where(values.notna(), None),
        "event_time timestamp, kind string, name string, number double, text string",
    )
    drift = drift_table(frame, WINDOW_MS, DriftConfig(bins=10, threshold=0.2))
    flagged = {(r.name, r.window_start.minute) for r in drift.itertuples() if r.flagged}
    assert flagged == {("shifted", 2), ("category", 2)}
    first = drift[drift["window_start"] == drift["window_start"].min()]
    assert (first["psi"] < 0.05).all()  # the reference window against itself, or nearly


def test_the_evidence_table_has_the_evidences_fields_in_order_then_the_costs():
    assert EVIDENCE_ROW.fieldNames() == [f.name for f in fields(Evidence)] + list(COST_COLUMNS)
