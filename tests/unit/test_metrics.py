"""Each metric, McNemar's test and the paired bootstrap against scikit-learn and SciPy on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from comparison.metrics import evaluate, mcnemar, paired_bootstrap


def classified(n: int, seed: int):
    """Labels and two models' probabilities and decisions, the second better, with tied scores."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.2).astype(int)
    weak = np.round(np.clip(0.2 + 0.15 * truth + rng.normal(0, 0.2, n), 0, 1), 2)  # rounded: ties
    strong = np.clip(0.2 + 0.45 * truth + rng.normal(0, 0.2, n), 0, 1)  # clipped: exact 0s and 1s
    return truth, (weak, (weak >= 0.3).astype(int)), (strong, (strong >= 0.4).astype(int))


SKLEARN = {
    "accuracy": lambda t, s, d: sk.accuracy_score(t, d),
    "precision": lambda t, s, d: sk.precision_score(t, d, zero_division=np.nan),
    "recall": lambda t, s, d: sk.recall_score(t, d, zero_division=np.nan),
    "roc_auc": lambda t, s, d: sk.roc_auc_score(t, s),
    "log_loss": lambda t, s, d: sk.log_loss(t, s, labels=[0, 1]),
    "mae": lambda t, s, d: sk.mean_absolute_error(t, s),
    "rmse": lambda t, s, d: sk.root_mean_squared_error(t, s),
}


@pytest.mark.parametrize("name", ["accuracy", "precision", "recall", "roc_auc", "log_loss"])
def test_classification_metrics_are_scikit_learns(name):
    truth, *models = classified(500, seed=3)
    for score, decision in models:
        assert evaluate(name, truth, score, decision) == pytest.approx(SKLEARN[name](truth, score, decision), rel=1e-12)


@pytest.mark.parametrize("name", ["mae", "rmse"])
def test_regression_metrics_are_scikit_learns(name):
    rng = np.random.default_rng(5)
    truth = rng.gamma(2.0, 10.0, 300)
    predicted = truth + rng.normal(0, 4, 300)
    assert evaluate(name, truth, predicted, predicted) == pytest.approx(
        SKLEARN[name](truth, predicted, None), rel=1e-12
    )


def test_metrics_of_many_resamples_at_once_are_the_metrics_of_each():
    truth, (score, decision), _ = classified(200, seed=4)
    rows = np.random.default_rng(0).integers(0, 200, size=(6, 200))
    for name in ("accuracy", "precision", "recall", "roc_auc", "log_loss"):
        together = evaluate(name, truth[rows], score[rows], decision[rows])
        one_by_one = [SKLEARN[name](truth[r], score[r], decision[r]) for r in rows]
        np.testing.assert_allclose(together, one_by_one, rtol=1e-12)


def test_decision_metrics_judge_the_decisions_given():
    truth = np.array([1, 1, 0, 0, 1])
    decision = np.array([1, np.nan, 0, 1, np.nan])  # two answers without a decision (the default)
    assert evaluate("accuracy", truth, truth, decision) == pytest.approx(2 / 3)
    assert evaluate("precision", truth, truth, decision) == pytest.approx(1 / 2)
    assert evaluate("recall", truth, truth, decision) == 1.0


def test_undefined_metrics_are_nan_not_zero():
    truth = np.array([0, 0, 0, 0])
    score = np.array([0.1, 0.2, 0.3, 0.4])
    nothing_flagged = np.zeros(4, dtype=int)
    assert np.isnan(evaluate("roc_auc", truth, score, nothing_flagged))  # one class only
    assert np.isnan(evaluate("precision", truth, score, nothing_flagged))  # no positive decision
    assert np.isnan(evaluate("recall", truth, score, nothing_flagged))  # no positive label
    assert np.isnan(evaluate("accuracy", truth[:0], score[:0], nothing_flagged[:0]))


@pytest.mark.parametrize("n, seed, method", [(40, 1, "exact"), (2000, 2, "chi2")])  # few discordant requests, many
def test_mcnemar_is_scipys_binomial_or_chi_square_test(n, seed, method):
    truth, (_, champion), (_, challenger) = classified(n, seed)
    result = mcnemar(truth, champion, challenger)
    b = int(np.sum((champion == truth) & (challenger != truth)))
    c = int(np.sum((champion != truth) & (challenger == truth)))
    assert (result.champion_only, result.challenger_only, result.method) == (b, c, method)
    if method == "exact":
        assert result.p_value == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    else:
        statistic = (abs(b - c) - 1) ** 2 / (b + c)
        assert result.statistic == pytest.approx(statistic)
        assert result.p_value == pytest.approx(stats.chi2.sf(statistic, df=1), rel=1e-9)


def test_mcnemar_without_discordant_requests_finds_no_difference():
    truth = np.array([1, 0, 1])
    assert mcnemar(truth, truth, truth).p_value == 1.0


@pytest.mark.parametrize("name", ["roc_auc", "log_loss", "accuracy"])
def test_paired_bootstrap_interval_is_scipys(name):
    truth, champion, challenger = classified(600, seed=6)
    ours = paired_bootstrap(name, truth, champion, challenger, resamples=4000, confidence=0.95, seed=1)

    def improvement(t, s1, d1, s2, d2, axis=-1):
        before, after = evaluate(name, t, s1, d1), evaluate(name, t, s2, d2)
        return after - before if name != "log_loss" else before - after

    theirs = stats.bootstrap(
        (truth, *champion, *challenger),
        improvement,
        paired=True,
        vectorized=True,
        n_resamples=4000,
        confidence_level=0.95,
        method="percentile",
        rng=2,
    )
    assert ours.effect == pytest.approx(improvement(truth, *champion, *challenger), rel=1e-12)
    # Two independent sets of resamples: the bounds agree within Monte Carlo error.
    width = theirs.confidence_interval.high - theirs.confidence_interval.low
    assert ours.low == pytest.approx(theirs.confidence_interval.low, abs=0.05 * width)
    assert ours.high == pytest.approx(theirs.confidence_interval.high, abs=0.05 * width)
    assert ours.low > 0  # the second model is better on every metric here
