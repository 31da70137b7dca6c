"""Data for the HTML report's figures, computed here so rendering only draws.

Every series is reduced to a few hundred points: a million-row log must not become a
million-point page. ROC and precision-recall curves are exact at the kept thresholds
(taken evenly along the sorted distinct thresholds); histograms share their bins between
the models and stop at the 99.5th percentile so one stray request does not squash the
rest (later values fall in the last bin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contender.analysis.data import FloatArray

MAX_CURVE_POINTS = 400
HISTOGRAM_BINS = 60
SCATTER_POINTS = 2000


@dataclass(frozen=True)
class Curve:
    x: FloatArray
    y: FloatArray


@dataclass(frozen=True)
class ArmCurves:
    """ROC (x fpr, y tpr) and precision-recall (x recall, y precision), or a scatter
    sample (x label, y prediction) for regressors."""

    roc: Curve | None
    precision_recall: Curve | None
    scatter: Curve | None


@dataclass(frozen=True)
class Histogram:
    """Shared bins; each model's share of its values per bin (empty: no values)."""

    edges: FloatArray
    champion_share: FloatArray
    challenger_share: FloatArray


def _thin(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def _cumulative_counts(scores: FloatArray, labels: FloatArray) -> tuple[FloatArray, FloatArray]:
    """True and false positives at each distinct threshold, from the highest down."""
    order = np.argsort(-scores, kind="stable")
    ordered_scores, ordered_labels = scores[order], labels[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(ordered_scores)), len(scores) - 1]
    true_positives = np.cumsum(ordered_labels)[last_of_each]
    false_positives = (last_of_each + 1) - true_positives
    return true_positives.astype(np.float64), false_positives.astype(np.float64)


def roc_and_pr(
    scores: FloatArray, labels: FloatArray, max_points: int = MAX_CURVE_POINTS
) -> tuple[Curve | None, Curve | None]:
    positives = float(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None, None
    tp, fp = _cumulative_counts(scores, labels)
    keep = _thin(len(tp), max_points)
    tp, fp = tp[keep], fp[keep]
    roc = Curve(np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives])
    pr = Curve(tp / positives, tp / (tp + fp))
    return roc, pr


def prediction_sample(
    predictions: FloatArray, labels: FloatArray, rng: np.random.Generator
) -> Curve:
    keep = np.arange(len(labels))
    if len(keep) > SCATTER_POINTS:
        keep = np.sort(rng.choice(len(labels), SCATTER_POINTS, replace=False))
    return Curve(labels[keep], predictions[keep])


def paired_histogram(
    champion: FloatArray, challenger: FloatArray, low_percentile: float = 0.0
) -> Histogram:
    """Both models' values in shared bins from the `low_percentile` (0: from zero) to the
    99.5th percentile of all values; values beyond either end fall in the end bins."""
    champion = champion[~np.isnan(champion)]
    challenger = challenger[~np.isnan(challenger)]
    both = np.concatenate([champion, challenger])
    if len(both) == 0:
        empty = np.zeros(0)
        return Histogram(empty, empty, empty)
    low = float(np.percentile(both, low_percentile)) if low_percentile > 0 else 0.0
    high = float(np.percentile(both, 99.5))
    high = high if high > low else low + 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)

    def share(values: FloatArray) -> FloatArray:
        counts, _ = np.histogram(np.clip(values, low, high), bins=edges)
        return counts / max(len(values), 1)

    return Histogram(edges, share(champion), share(challenger))
