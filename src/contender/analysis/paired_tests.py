"""Paired significance tests of challenger against champion on the same rows or requests.

- `mcnemar_p_value`: accuracy. Only discordant rows (one model right, the other wrong)
  carry information; under "equally accurate" each is the challenger's win with
  probability 1/2, so the exact binomial test on them is McNemar's exact test.
- `clustered_paired_t`: per-row losses (squared error for RMSE, absolute error for MAE,
  log loss). Tests whether the mean per-row difference is zero with a request-clustered
  standard error; for one-row requests it is exactly the paired t-test
  (`scipy.stats.ttest_rel`). RMSE is a monotone function of the mean squared error, so
  testing the squared errors tests RMSE.
- `excess_failure_p_value`: the error-rate guardrail. On requests where both models ran,
  a one-sided exact binomial test that the challenger fails alone more often than the
  champion fails alone.

McNemar treats rows as independent; with multi-row requests the bootstrap interval (which
resamples whole requests, and which the verdict reads) is the more careful of the two.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from scipy.stats import t as student_t

from contender.analysis.data import BoolArray, FloatArray, IntArray


def mcnemar_p_value(champion_correct: BoolArray, challenger_correct: BoolArray) -> float:
    champion_only = int((champion_correct & ~challenger_correct).sum())
    challenger_only = int((challenger_correct & ~champion_correct).sum())
    discordant = champion_only + challenger_only
    if discordant == 0:
        return 1.0
    return float(binomtest(challenger_only, discordant, 0.5).pvalue)


def clustered_paired_t(
    differences: FloatArray, cluster: IntArray, n_clusters: int
) -> tuple[float, float]:
    """(mean difference, two-sided p-value) with a request-clustered standard error."""
    n = len(differences)
    if n == 0 or n_clusters < 2:
        return float("nan"), float("nan")
    mean = float(differences.mean())
    per_cluster = np.bincount(cluster, weights=differences, minlength=n_clusters)
    rows = np.bincount(cluster, minlength=n_clusters)
    residual = per_cluster - rows * mean
    se = float(np.sqrt(n_clusters / (n_clusters - 1) * np.dot(residual, residual))) / n
    if se == 0:
        return mean, 1.0 if mean == 0 else 0.0
    statistic = mean / se
    return mean, float(2 * student_t.sf(abs(statistic), df=n_clusters - 1))


def excess_failure_p_value(champion_failed: BoolArray, challenger_failed: BoolArray) -> float:
    """One-sided: small when the challenger fails significantly more often."""
    challenger_only = int((challenger_failed & ~champion_failed).sum())
    champion_only = int((champion_failed & ~challenger_failed).sum())
    discordant = challenger_only + champion_only
    if discordant == 0:
        return 1.0
    return float(binomtest(challenger_only, discordant, 0.5, alternative="greater").pvalue)
