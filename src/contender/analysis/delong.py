"""DeLong's variance of AUC and of a paired AUC difference, clustered by request.

Algorithm (DeLong, DeLong & Clarke-Pearson 1988, in the O(n log n) form of Sun & Xu
2014): each positive row gets its placement `V10` (the share of negatives it outscores,
ties one half) and each negative row its `V01` (the share of positives that outscore it);
the AUC is the mean of either. Rows of one request may be correlated, so the variance
follows Obuchowski (1997): sum each row's influence `(V10 - AUC) / M` or
`(V01 - AUC) / N` per request, then `var = K / (K - 1) * sum(u_k ** 2)` over the K
requests. For one-row requests this equals classic DeLong up to a factor of
about `(1 - 1/M)`. The difference of two AUCs on the same rows is linear in the
placements, so its variance is the same formula over the difference of the influences.

Intervals and tests use the normal approximation. Undefined (NaN) with a single class or
fewer than two requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from contender.analysis.data import BoolArray, FloatArray, IntArray
from contender.analysis.intervals import CONFIDENCE

_Z = float(norm.ppf(0.5 + CONFIDENCE / 2))


@dataclass(frozen=True)
class DeLongResult:
    auc_champion: float
    auc_challenger: float
    var_champion: float
    var_challenger: float
    var_difference: float

    @property
    def difference(self) -> float:
        return self.auc_challenger - self.auc_champion


def auc_influence(
    scores: FloatArray, positive: BoolArray, cluster: IntArray, n_clusters: int
) -> tuple[float, FloatArray]:
    """AUC and each cluster's summed influence `u_k` (see the module docstring)."""
    n_positive = int(positive.sum())
    n_negative = len(scores) - n_positive
    all_ranks = rankdata(scores)
    v10 = (all_ranks[positive] - rankdata(scores[positive])) / n_negative
    v01 = 1 - (all_ranks[~positive] - rankdata(scores[~positive])) / n_positive
    auc = float(v10.mean())
    row = np.empty(len(scores), dtype=np.float64)
    row[positive] = (v10 - auc) / n_positive
    row[~positive] = (v01 - auc) / n_negative
    return auc, np.bincount(cluster, weights=row, minlength=n_clusters).astype(np.float64)


def paired_delong(
    champion: FloatArray,
    challenger: FloatArray,
    labels: FloatArray,
    cluster: IntArray,
    n_clusters: int,
) -> DeLongResult:
    positive = labels == 1
    n_positive = int(positive.sum())
    if n_positive in (0, len(labels)) or n_clusters < 2:
        nan = float("nan")
        return DeLongResult(nan, nan, nan, nan, nan)
    auc_a, u_a = auc_influence(champion, positive, cluster, n_clusters)
    auc_b, u_b = auc_influence(challenger, positive, cluster, n_clusters)
    scale = n_clusters / (n_clusters - 1)
    return DeLongResult(
        auc_champion=auc_a,
        auc_challenger=auc_b,
        var_champion=scale * float(np.dot(u_a, u_a)),
        var_challenger=scale * float(np.dot(u_b, u_b)),
        var_difference=scale * float(np.dot(u_b - u_a, u_b - u_a)),
    )


def normal_interval(
    estimate: float, variance: float, bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    half = _Z * float(np.sqrt(variance))
    lo, hi = estimate - half, estimate + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return lo, hi


def normal_p_value(estimate: float, variance: float) -> float:
    """Two-sided z-test of zero; a zero variance gives 1 for a zero estimate, else 0."""
    if np.isnan(estimate) or np.isnan(variance):
        return float("nan")
    if variance <= 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * norm.sf(abs(estimate) / np.sqrt(variance)))
