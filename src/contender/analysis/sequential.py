"""Always-valid (anytime) intervals and p-values, so the report may be read every day.

A fixed-horizon 95 % interval `estimate +- 1.96 se` covers the truth with 95 % probability
at one pre-planned look. Read daily and acted upon the first time it excludes zero, it
promotes a no-better challenger far more often than 5 % (about 10-13 % over 30 looks).
A *confidence sequence* instead covers the truth at every look at once with probability
at least `1 - alpha`, so stopping whenever it first excludes zero keeps the error rate.

`Boundary(mode="sequential")` is the asymptotic confidence sequence of Waudby-Smith,
Arbour, Sinha, Kennedy & Ramdas (2021, "Time-uniform central limit theory and asymptotic
confidence sequences", Theorem 2.2, the two-sided normal-mixture boundary of Robbins
1970): for the mean of `n` independent units with sample standard deviation `s_n`,

    D_n +- s_n * sqrt(2 (n r^2 + 1) / (n^2 r^2) * ln(sqrt(n r^2 + 1) / alpha)).

With `se = s_n / sqrt(n)` this is `D_n +- multiplier(n) * se`, where

    multiplier(n) = sqrt(2 (n r^2 + 1) / (n r^2) * ln(sqrt(n r^2 + 1) / alpha)),

which replaces the fixed `z = 1.96`. The same multiplier serves any asymptotically normal
estimator with a consistent standard error (a request-clustered mean, a DeLong AUC
difference): `n` is then the number of independent units (requests).

The mixing scale `r^2` (the paper's `rho^2`) chooses where the sequence is tightest.
The paper's closed-form choice of `rho` for a target sample size `t*` is

    r^2 = (-2 ln alpha + ln(-2 ln alpha + 1)) / t*

with `t*` = `tuning_rows`; the formula used here is exactly that one. It is an
approximation (via the Lambert W function) of the exact minimiser of the half-width at
`t*`: checked numerically, at alpha = 0.05 and t* = 5000 it gives r^2 = 1.587e-3 against the exact
minimiser 1.642e-3, and a half-width only 0.003 % wider than the best possible. At
`t*` the multiplier is about 3.03 (alpha 0.05) instead of 1.96: that is the price of
being allowed to look every day; it grows only like `sqrt(ln n)` beyond `t*`.

`Boundary(mode="fixed")` gives the ordinary normal interval and z-test, for comparison
and for a single pre-planned analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy.stats import norm

from contender.analysis.data import FloatArray, IntArray

AUC_DIFFERENCE_BOUNDS = (-1.0, 1.0)


class Inference(NamedTuple):
    """A point estimate with its interval and two-sided p-value under one `Boundary`."""

    estimate: float
    ci: tuple[float, float]
    p_value: float


def tuned_r_squared(alpha: float, tuning_rows: int | float) -> float:
    """The mixing scale `r^2` that makes the boundary (nearly) tightest at `tuning_rows`.

    Waudby-Smith et al. (2021): `r^2 = (-2 ln alpha + ln(-2 ln alpha + 1)) / t*`.
    """
    log_term = -2 * math.log(alpha)
    return (log_term + math.log(log_term + 1)) / tuning_rows


@dataclass(frozen=True)
class Boundary:
    """How wide an interval must be: always-valid (`sequential`) or one look (`fixed`).

    `alpha` is the two-sided error rate: over all looks at once for `sequential`, at a
    single look for `fixed`. `tuning_rows` is the number of independent units (requests)
    at which the sequential boundary is tightest; choose about the size at which the
    decision is expected.
    """

    mode: Literal["sequential", "fixed"] = "sequential"
    alpha: float = 0.05
    tuning_rows: int = 5000

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.tuning_rows < 1:
            raise ValueError(f"tuning_rows must be at least 1, got {self.tuning_rows}")
        if self.mode not in ("sequential", "fixed"):
            raise ValueError(f"mode must be 'sequential' or 'fixed', got {self.mode!r}")

    @property
    def r_squared(self) -> float:
        return tuned_r_squared(self.alpha, self.tuning_rows)

    def multiplier(self, n: int | float) -> float:
        """The factor replacing z in `estimate +- multiplier(n) * se`; inf below one unit."""
        if not n >= 1:  # also NaN
            return math.inf
        if self.mode == "fixed":
            return float(norm.ppf(1 - self.alpha / 2))
        nr2 = n * self.r_squared
        return math.sqrt(2 * (nr2 + 1) / nr2 * math.log(math.sqrt(nr2 + 1) / self.alpha))

    def interval(
        self,
        estimate: float,
        se: float,
        n: int | float,
        bounds: tuple[float, float] | None = None,
    ) -> tuple[float, float]:
        """`estimate +- multiplier(n) * se`, clipped to `bounds`; NaN in gives NaN out."""
        if math.isnan(estimate) or math.isnan(se):
            return math.nan, math.nan
        half = self.multiplier(n) * se if se > 0 else 0.0
        lo, hi = estimate - half, estimate + half
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        return lo, hi

    def p_value(self, estimate: float, se: float, n: int | float) -> float:
        """Two-sided p-value of zero, in [0, 1]: `p <= alpha` exactly when 0 is outside.

        fixed: the z-test `2 * sf(|estimate| / se)`. sequential: the always-valid
        p-value, the smallest alpha' at which 0 leaves the sequence, with `r^2` kept at
        the value tuned for `self.alpha` (so the duality with `interval` is exact).
        Solving `z^2 = 2 (n r^2 + 1) / (n r^2) * ln(sqrt(n r^2 + 1) / alpha')` for
        `z = |estimate| / se` gives `alpha' = sqrt(n r^2 + 1) exp(-z^2 n r^2 /
        (2 (n r^2 + 1)))`, the reciprocal of the normal-mixture martingale (Ville's
        inequality makes it valid at every look at once).

        This is the p-value at the current look. The running minimum over past looks is
        also valid and never increases; a reader who wants it must keep it (the report
        shows the current one, computed from the rows it has).
        """
        if math.isnan(estimate) or math.isnan(se) or math.isnan(n):
            return math.nan
        if n < 1:
            return 1.0
        if se <= 0:
            return 1.0 if estimate == 0 else 0.0
        z = abs(estimate) / se
        if self.mode == "fixed":
            return float(2 * norm.sf(z))
        nr2 = n * self.r_squared
        log_p = 0.5 * math.log(nr2 + 1) - z * z * nr2 / (2 * (nr2 + 1))
        return min(1.0, math.exp(log_p))


def clustered_mean_se(
    differences: FloatArray, cluster: IntArray, n_clusters: int
) -> tuple[float, float]:
    """(mean, request-clustered standard error) of per-row values.

    As `paired_tests.clustered_paired_t`: sum each request's residuals, then
    `se = sqrt(K / (K - 1) * sum_k e_k^2) / n_rows` (the cluster-robust sandwich of
    Liang & Zeger 1986 with the usual small-sample factor). For one-row requests it is
    `s / sqrt(n)`. NaN without rows or with fewer than two requests.
    """
    n = len(differences)
    if n == 0 or n_clusters < 2:
        return math.nan, math.nan
    mean = float(differences.mean())
    per_cluster = np.bincount(cluster, weights=differences, minlength=n_clusters)
    rows = np.bincount(cluster, minlength=n_clusters)
    residual = per_cluster - rows * mean
    se = float(np.sqrt(n_clusters / (n_clusters - 1) * np.dot(residual, residual))) / n
    return mean, se


def mean_difference(
    differences: FloatArray, cluster: IntArray, n_clusters: int, boundary: Boundary
) -> Inference:
    """Mean of paired per-row loss differences, its interval and p-value under `boundary`.

    `differences` are per row (for instance champion loss minus challenger loss, so
    that positive means the challenger is better); `n` for the boundary is the number
    of requests, the independent units.
    """
    mean, se = clustered_mean_se(differences, cluster, n_clusters)
    return Inference(
        mean,
        boundary.interval(mean, se, n_clusters),
        boundary.p_value(mean, se, n_clusters),
    )


def auc_difference(
    difference: float, var_difference: float, n_requests: int, boundary: Boundary
) -> Inference:
    """AUC difference (challenger minus champion) with interval and p-value.

    `var_difference` is DeLong's clustered variance (`delong.paired_delong`), so
    `se = sqrt(var_difference)`; `n_requests` (the clusters) indexes the boundary. The
    interval is clipped to [-1, 1].
    """
    se = math.sqrt(var_difference) if var_difference >= 0 else math.nan
    return Inference(
        difference,
        boundary.interval(difference, se, n_requests, AUC_DIFFERENCE_BOUNDS),
        boundary.p_value(difference, se, n_requests),
    )
