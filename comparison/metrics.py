"""Model metrics, McNemar's test and the paired bootstrap, in vectorised numpy.

One implementation serves both the per-window comparison (one group of requests at a time) and
the bootstrap (thousands of resamples at once): every metric reduces the last axis, so a
(resamples, requests) matrix gives one value per resample, with no Python loop over requests.

`truth` is the label (0/1 for a classification, the value for a regression), `score` the model's
score (a probability, or the predicted value) and `decision` its predicted class, NaN where there
is none (a default answer): accuracy, precision and recall judge the decisions given. A metric that
is undefined on its input (precision without a positive decision, ROC AUC without both classes) is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "roc_auc"})
# Probabilities are clipped this far from 0 and 1 in the log loss, as scikit-learn does for float64.
_EPS = np.finfo(np.float64).eps


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def accuracy(truth, score, decision) -> np.ndarray:
    decided = ~np.isnan(decision)
    return _ratio(np.sum((decision == truth) & decided, axis=-1), np.sum(decided, axis=-1))


def precision(truth, score, decision) -> np.ndarray:
    return _ratio(np.sum((decision == 1) & (truth == 1), axis=-1), np.sum(decision == 1, axis=-1))


def recall(truth, score, decision) -> np.ndarray:
    positives = (truth == 1) & ~np.isnan(decision)
    return _ratio(np.sum((decision == 1) & positives, axis=-1), np.sum(positives, axis=-1))


def roc_auc(truth, score, decision) -> np.ndarray:
    """The Mann-Whitney form: the chance that a positive outranks a negative, ties counting half."""
    ranks = rankdata(score, axis=-1)
    positives = np.sum(truth == 1, axis=-1)
    negatives = truth.shape[-1] - positives
    rank_sum = np.sum(np.where(truth == 1, ranks, 0.0), axis=-1)
    return _ratio(rank_sum - positives * (positives + 1) / 2.0, positives * negatives)


def log_loss(truth, score, decision) -> np.ndarray:
    p = np.clip(score, _EPS, 1 - _EPS)
    return -np.mean(np.where(truth == 1, np.log(p), np.log1p(-p)), axis=-1)


def mae(truth, score, decision) -> np.ndarray:
    return np.mean(np.abs(truth - score), axis=-1)


def rmse(truth, score, decision) -> np.ndarray:
    return np.sqrt(np.mean((truth - score) ** 2, axis=-1))


METRICS = {f.__name__: f for f in (accuracy, precision, recall, roc_auc, log_loss, mae, rmse)}


def evaluate(name: str, truth: np.ndarray, score: np.ndarray, decision: np.ndarray) -> np.ndarray:
    """The named metric over the last axis; an empty input gives NaN."""
    if truth.shape[-1] == 0:
        return np.full(truth.shape[:-1], np.nan)
    return METRICS[name](truth, score, decision)


def improvement(name: str, champion: np.ndarray, challenger: np.ndarray) -> np.ndarray:
    """How much better the challenger is, in the metric's units: positive means better, whichever
    way the metric points (a lower log loss is an improvement)."""
    return challenger - champion if name in HIGHER_IS_BETTER else champion - challenger


@dataclass(frozen=True)
class McNemar:
    """McNemar's test of two classifiers' decisions on the same labelled requests."""

    champion_only: int  # requests the champion decided right and the challenger wrong
    challenger_only: int  # and the other way round
    statistic: float
    p_value: float
    method: str  # "exact" (binomial, under 25 discordant requests) or "chi2" (with continuity correction)


def mcnemar(truth: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> McNemar:
    """Only the discordant requests carry evidence: b (champion right only) and c (challenger
    right only). Below 25 of them the two-sided binomial test is exact; above, the chi-square
    statistic (|b - c| - 1)^2 / (b + c) with one degree of freedom, as statsmodels does."""
    champion_right, challenger_right = champion == truth, challenger == truth
    b = int(np.sum(champion_right & ~challenger_right))
    c = int(np.sum(challenger_right & ~champion_right))
    n = b + c
    if n == 0:
        return McNemar(b, c, 0.0, 1.0, "exact")
    if n < 25:
        k = min(b, c)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
        return McNemar(b, c, float(k), min(1.0, 2.0 * tail), "exact")
    statistic = (abs(b - c) - 1) ** 2 / n
    return McNemar(b, c, statistic, math.erfc(math.sqrt(statistic / 2.0)), "chi2")


@dataclass(frozen=True)
class Interval:
    """A paired bootstrap percentile interval of the challenger's improvement over the champion."""

    effect: float  # the improvement on the requests themselves
    low: float
    high: float
    confidence: float
    resamples: int


def paired_bootstrap(
    name: str,
    truth: np.ndarray,
    champion: tuple[np.ndarray, np.ndarray],
    challenger: tuple[np.ndarray, np.ndarray],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Resample the requests with replacement, the same requests for both models (they scored the
    same ones), and take the percentile interval of the improvement. champion and challenger are
    (score, decision) arrays aligned with truth. Resamples are drawn in chunks of a few million
    cells, so memory stays bounded whatever the number of requests."""
    n = len(truth)
    effect = float(improvement(name, evaluate(name, truth, *champion), evaluate(name, truth, *challenger)))
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // max(n, 1))
    differences = []
    for start in range(0, resamples, chunk):
        rows = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        t = truth[rows]
        differences.append(
            improvement(
                name,
                evaluate(name, t, champion[0][rows], champion[1][rows]),
                evaluate(name, t, challenger[0][rows], challenger[1][rows]),
            )
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(np.concatenate(differences), [alpha, 1.0 - alpha])
    return Interval(effect, float(low), float(high), confidence, resamples)
