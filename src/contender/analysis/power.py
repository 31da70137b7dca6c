"""How small a difference the rows can detect, and how many rows a target difference needs.

Power uses the one-sided normal approximation: a true difference `delta > 0` is detected
(the interval's lower bound exceeds zero) when `estimate - multiplier(n) * se > 0`; with
`estimate ~ N(delta, se^2)` that happens with probability
`Phi(delta / se - multiplier(n))`, so power `1 - beta` needs

    delta >= (multiplier(n) + z_{1 - beta}) * se

(the textbook sample-size formula, e.g. Chow, Shao & Wang, "Sample Size Calculations in
Clinical Research", with `z_{1 - alpha/2}` replaced by the boundary's multiplier). The
far tail (rejecting in the wrong direction) is ignored, which is negligible for power
above one half. `Boundary(mode="sequential")` gives the rows needed for an always-valid
decision: more than a fixed design, since the multiplier is larger (about 3.0 against
1.96 at `tuning_rows`).

For AUC the per-model variance is Hanley & McNeil's (1982) closed form and the paired
difference combines two of them with the correlation between the two AUC estimates
(Hanley & McNeil 1983).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy.stats import norm

from contender.analysis.sequential import Boundary


def _z_power(power: float) -> float:
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    return float(norm.ppf(power))


def minimum_detectable(se: float, n: int, boundary: Boundary, power: float = 0.8) -> float:
    """Smallest true difference that `n` units with standard error `se` detect with `power`.

    `(multiplier(n) + z_power) * se`, one-sided (see the module docstring).
    """
    return (boundary.multiplier(n) + _z_power(power)) * se


def _smallest_n(detects: Callable[[int], bool], max_rows: int) -> int:
    """Smallest n in [1, max_rows] with `detects(n)`, for a `detects` false then true.

    Bisection; `max_rows` when even `max_rows` does not detect.
    """
    if detects(1):
        return 1
    if not detects(max_rows):
        return max_rows
    lo, hi = 1, max_rows  # detects(lo) is false, detects(hi) is true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if detects(mid):
            hi = mid
        else:
            lo = mid
    return hi


def rows_needed(
    per_row_sd: float,
    target_effect: float,
    boundary: Boundary,
    power: float = 0.8,
    max_rows: int = 10**9,
) -> int:
    """Total units (requests) for `power` to detect a mean difference of `target_effect`.

    The smallest `n` with `(multiplier(n) + z_power) * per_row_sd / sqrt(n) <=
    |target_effect|`; the left side decreases in `n` (the sequential multiplier grows
    only like `sqrt(ln n)`), so bisection finds it. `per_row_sd` is the standard
    deviation of one unit's difference (for requests of several rows, `se * sqrt(K)`
    from the clustered standard error). This is the total: the caller subtracts the
    units it already has. Returns `max_rows` when even that many do not suffice.
    """
    if math.isnan(per_row_sd) or math.isnan(target_effect) or per_row_sd < 0:
        raise ValueError(f"need a finite sd >= 0 and effect, got {per_row_sd}, {target_effect}")
    effect = abs(target_effect)
    if effect == 0:
        return max_rows
    z_power = _z_power(power)

    def detects(n: int) -> bool:
        return (boundary.multiplier(n) + z_power) * per_row_sd / math.sqrt(n) <= effect

    return _smallest_n(detects, max_rows)


def hanley_mcneil_variance(auc: float, n_pos: float, n_neg: float) -> float:
    """Variance of an empirical AUC (Hanley & McNeil 1982, eq. 2, exponential scores).

    `Q1 = A / (2 - A)`, `Q2 = 2 A^2 / (1 + A)`,
    `var = (A (1 - A) + (n_pos - 1)(Q1 - A^2) + (n_neg - 1)(Q2 - A^2)) / (n_pos n_neg)`.
    """
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    a2 = auc * auc
    return (auc * (1 - auc) + (n_pos - 1) * (q1 - a2) + (n_neg - 1) * (q2 - a2)) / (n_pos * n_neg)


def paired_auc_difference_sd(
    auc1: float, auc2: float, n_pos: float, n_neg: float, correlation: float
) -> float:
    """Standard error of `auc2 - auc1` on the same rows (Hanley & McNeil 1983).

    `sqrt(v1 + v2 - 2 r sqrt(v1 v2))` with Hanley-McNeil variances; `correlation` is the
    correlation `r` between the two AUC estimates (their Table 1 maps the correlation of
    the scores to it).
    """
    v1 = hanley_mcneil_variance(auc1, n_pos, n_neg)
    v2 = hanley_mcneil_variance(auc2, n_pos, n_neg)
    return math.sqrt(max(0.0, v1 + v2 - 2 * correlation * math.sqrt(v1 * v2)))


def auc_rows_needed(
    auc1: float,
    auc2_target: float,
    prevalence: float,
    correlation: float,
    boundary: Boundary,
    power: float = 0.8,
    max_rows: int = 10**9,
) -> int:
    """Total labeled rows (one-row requests) for `power` to detect `auc2_target - auc1`.

    Positives `prevalence * n`, negatives the rest; the smallest `n` with
    `(multiplier(n) + z_power) * paired_auc_difference_sd(...) <= |auc2 - auc1|`.
    At 50 % positives, correlation 0.7, 0.80 against 0.81, fixed two-sided 5 % and 80 %
    power this is about 9,000 rows; at 10 % positives about 34,000.
    """
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must be in (0, 1), got {prevalence}")
    effect = abs(auc2_target - auc1)
    if effect == 0:
        return max_rows
    z_power = _z_power(power)

    def detects(n: int) -> bool:
        n_pos, n_neg = prevalence * n, (1 - prevalence) * n
        if n_pos < 1 or n_neg < 1:
            return False
        se = paired_auc_difference_sd(auc1, auc2_target, n_pos, n_neg, correlation)
        return (boundary.multiplier(n) + z_power) * se <= effect

    return _smallest_n(detects, max_rows)
