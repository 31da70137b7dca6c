"""Seeded-simulation helpers shared by the statistics tests and `bench/stats.py` (which
runs the same simulations bigger): vectorised over runs, arrays of shape (runs, rows)
read at looks through cumulative sums, one request per row."""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit

from contender.analysis.data import BoolArray, FloatArray
from contender.analysis.sequential import Boundary


def running_mean_se(
    differences: FloatArray, look_rows: np.ndarray
) -> tuple[FloatArray, FloatArray]:
    """(runs, looks) mean and `s / sqrt(n)` of the first `look_rows` rows of each run
    (the clustered standard error of one-row requests)."""
    total = np.cumsum(differences, axis=1)[:, look_rows - 1]
    squares = np.cumsum(differences**2, axis=1)[:, look_rows - 1]
    mean = total / look_rows
    var = (squares - look_rows * mean**2) / (look_rows - 1)
    return mean, np.sqrt(np.maximum(var, 0) / look_rows)


def multipliers(boundary: Boundary, look_rows: np.ndarray) -> FloatArray:
    return np.array([boundary.multiplier(int(n)) for n in look_rows])


def expected(function_of_x: FloatArray, weights: FloatArray) -> float:
    return float(np.dot(weights, function_of_x) / weights.sum())


def classifier_truths() -> tuple[float, float]:
    """Expected log-loss and Brier differences (champion minus challenger) when
    x ~ N(0, 1), P(y = 1 | x) = expit(1.5 x), the champion predicts expit(x) and the
    challenger expit(1.4 x + 0.2): Gauss-Hermite quadrature over x, exact to machine
    precision for these smooth integrands."""
    x, w = hermegauss(120)
    p, q1, q2 = expit(1.5 * x), expit(x), expit(1.4 * x + 0.2)
    log_loss = p * (np.log(q2) - np.log(q1)) + (1 - p) * (np.log1p(-q2) - np.log1p(-q1))
    brier = p * ((1 - q1) ** 2 - (1 - q2) ** 2) + (1 - p) * (q1**2 - q2**2)
    return expected(log_loss, w), expected(brier, w)


_SHIFT = 16  # one int32 running sum counts both classes: positives high, negatives low


def _below(order: np.ndarray, inverse: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Per run, for each of the first `n` rows: how many look rows of each class score lower.

    `order` sorts a run's scores, `inverse` undoes it, `weight` (in sorted order) is
    `2^16` for a positive and 1 for a negative: a running sum in sorted order over the
    rows of the look counts negatives in its low 16 bits and positives in its high bits
    (at most 32,767 rows per run).
    """
    running = np.cumsum((order < n) * weight, axis=1, dtype=np.int32)
    return np.take_along_axis(running, inverse[:, :n], axis=1)


def vectorised_delong(
    champion: FloatArray, challenger: FloatArray, positive: BoolArray, look_rows: np.ndarray
) -> tuple[FloatArray, FloatArray]:
    """(runs, looks) AUC difference and DeLong standard error, one request per row, no ties.

    `delong.paired_delong` expanded for one-row requests: with `M` positives, `N`
    negatives, `a_i` the change (challenger minus champion) in the number of negatives a
    positive outscores and `b_j` the change in positives outscoring a negative, the AUC
    difference is `D = sum(a) / (M N)` and the influences are `a_i / (M N) - D / M` and
    `b_j / (M N) - D / N`, so `var = n / (n - 1) * (sum(a^2) / (M N)^2 - D^2 / M
    + sum(b^2) / (M N)^2 - D^2 / N)`.
    """
    runs = champion.shape[0]
    sorted_by = []
    for scores in (champion, challenger):
        order = np.argsort(scores, axis=1).astype(np.int32)
        inverse = np.empty_like(order)
        rank = np.arange(order.shape[1], dtype=np.int32)[None, :]
        np.put_along_axis(inverse, order, rank, axis=1)
        positive_sorted = np.take_along_axis(positive, order, axis=1)
        weight = np.where(positive_sorted, np.int32(1 << _SHIFT), np.int32(1))
        sorted_by.append((order, inverse, weight))
    difference = np.empty((runs, len(look_rows)))
    se = np.empty((runs, len(look_rows)))
    for j, n in enumerate(look_rows):
        change = _below(*sorted_by[1], int(n)) - _below(*sorted_by[0], int(n))
        pos = positive[:, :n]
        m = pos.sum(axis=1).astype(np.float64)
        mn = m * (n - m)
        low = (change << _SHIFT) >> _SHIFT  # sign-extended: the change in negatives below
        a = np.where(pos, low, 0).astype(np.float64)
        b = np.where(pos, 0, (change - low) >> _SHIFT).astype(np.float64)
        d = a.sum(axis=1) / mn
        var = ((a * a).sum(axis=1) + (b * b).sum(axis=1)) / mn**2 - d * d * (1 / m + 1 / (n - m))
        difference[:, j] = d
        se[:, j] = np.sqrt(n / (n - 1) * var)
    return difference, se
