"""Point metrics over rows, in plain numpy (independent of scikit-learn, which tests use).

Conventions, shared with the intervals:

- a classifier predicts the positive class when `score >= threshold`;
- every metric except AUC is a *ratio of row sums*, `sum(numerator) / sum(denominator)`
  (RMSE: the square root of one). `RatioParts` holds the two per-row arrays, which is what
  lets the bootstrap recompute a metric from per-request sums (see `intervals`);
- a metric whose denominator is zero (precision with no predicted positive, AUC with one
  class) is NaN, shown as `null` in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from contender.analysis.data import FloatArray

# Probabilities are clipped so one confident mistake gives a large, finite log loss.
LOG_LOSS_EPS = 1e-15
# Regressors "agree" on a row when their predictions differ by at most this share of the
# spread (standard deviation) of the champion's predictions.
REGRESSION_AGREEMENT_TOLERANCE = 0.1


@dataclass(frozen=True)
class RatioParts:
    """A metric equal to `sum(numerator) / sum(denominator)`, or its root when `root`."""

    numerator: FloatArray
    denominator: FloatArray
    root: bool = False


def ratio_value(numerator: float, denominator: float, root: bool = False) -> float:
    if denominator == 0:
        return float("nan")
    value = numerator / denominator
    return float(np.sqrt(value)) if root else float(value)


def ratio_parts(name: str, scores: FloatArray, labels: FloatArray, threshold: float) -> RatioParts:
    """Per-row numerator and denominator of a ratio metric; AUC is not one."""
    ones = np.ones_like(scores)
    predicted = (scores >= threshold).astype(np.float64)
    true_positive = predicted * labels
    if name == "precision":
        return RatioParts(true_positive, predicted)
    if name == "recall":
        return RatioParts(true_positive, labels.astype(np.float64))
    if name == "accuracy":
        return RatioParts((predicted == labels).astype(np.float64), ones)
    if name == "log_loss":
        return RatioParts(row_log_loss(scores, labels), ones)
    if name == "brier":
        return RatioParts((scores - labels) ** 2, ones)
    if name == "rmse":
        return RatioParts((scores - labels) ** 2, ones, root=True)
    if name == "mae":
        return RatioParts(np.abs(scores - labels), ones)
    raise ValueError(f"{name} is not a ratio metric")


def metric_value(name: str, scores: FloatArray, labels: FloatArray, threshold: float) -> float:
    if name == "auc":
        return auc(scores, labels)
    parts = ratio_parts(name, scores, labels, threshold)
    return ratio_value(float(parts.numerator.sum()), float(parts.denominator.sum()), parts.root)


def auc(scores: FloatArray, labels: FloatArray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank sum (ties count one half)."""
    positive = labels == 1
    n_positive = int(positive.sum())
    n_negative = len(labels) - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    rank_sum = float(rankdata(scores)[positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def row_log_loss(scores: FloatArray, labels: FloatArray) -> FloatArray:
    """Per-row binary cross-entropy, natural log."""
    p = np.clip(scores, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return np.asarray(-(labels * np.log(p) + (1 - labels) * np.log1p(-p)), dtype=np.float64)


def agreement(a: FloatArray, b: FloatArray, classifier: bool, threshold: float) -> float:
    """Share of rows on which the two models agree.

    Classifiers: the same predicted class at `threshold`. Regressors: predictions within
    `REGRESSION_AGREEMENT_TOLERANCE` times the standard deviation of the champion's (`a`)
    predictions; a scale-free tolerance that still works for targets near zero.
    """
    if len(a) == 0:
        return float("nan")
    if classifier:
        return float(np.mean((a >= threshold) == (b >= threshold)))
    tolerance = REGRESSION_AGREEMENT_TOLERANCE * float(np.std(a))
    return float(np.mean(np.abs(a - b) <= tolerance))


@dataclass(frozen=True)
class LatencySummary:
    p50: float
    p95: float
    p99: float


def latency_summary(latency_ms: FloatArray) -> LatencySummary:
    """Percentiles (linear interpolation) of the logged latencies; NaN when none."""
    logged = latency_ms[~np.isnan(latency_ms)]
    if len(logged) == 0:
        return LatencySummary(float("nan"), float("nan"), float("nan"))
    p50, p95, p99 = np.percentile(logged, [50, 95, 99])
    return LatencySummary(float(p50), float(p95), float(p99))
