"""Always-valid intervals: the formula, then time-uniform coverage and error rates in
seeded simulations.

Simulations are vectorised over runs: arrays of shape (runs, rows), read at looks every
`PER_LOOK` rows through cumulative sums, one request per row (so the clustered standard
error is `s / sqrt(n)`, checked against `mean_difference` below). Tolerances: with 1,000
runs a true miss rate of 5 % has a binomial standard deviation of 0.7 %; the asymptotic
sequence at 30 discrete looks should sit well below 5 % (it is valid for continuous
monitoring), so "<= 5 %" leaves margin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import expit
from scipy.stats import norm

from contender.analysis.data import BoolArray, FloatArray
from contender.analysis.delong import paired_delong
from contender.analysis.intervals import dense_clusters
from contender.analysis.paired_tests import clustered_paired_t
from contender.analysis.sequential import (
    Boundary,
    auc_difference,
    clustered_mean_se,
    mean_difference,
    tuned_r_squared,
)
from tests.simulations import (
    classifier_truths,
    multipliers,
    running_mean_se,
    vectorised_delong,
)

RUNS = 1000
LOOKS = 30
PER_LOOK = 100
LOOK_ROWS = PER_LOOK * np.arange(1, LOOKS + 1)
SEQUENTIAL = Boundary()
FIXED = Boundary(mode="fixed")


# --- the formula ------------------------------------------------------------------------


def test_fixed_multiplier_is_the_normal_quantile() -> None:
    assert FIXED.multiplier(10) == pytest.approx(1.959964, abs=1e-6)
    assert FIXED.multiplier(10**6) == FIXED.multiplier(10)
    assert math.isinf(FIXED.multiplier(0))
    assert math.isinf(SEQUENTIAL.multiplier(0.5))


def test_sequential_multiplier_matches_the_paper() -> None:
    n, alpha, t_star = 1234, 0.05, 5000
    r2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / t_star
    radius = math.sqrt(2 * (n * r2 + 1) / (n**2 * r2) * math.log(math.sqrt(n * r2 + 1) / alpha))
    # D_n +- s_n * radius with se = s_n / sqrt(n).
    assert SEQUENTIAL.multiplier(n) == pytest.approx(radius * math.sqrt(n), rel=1e-12)
    assert SEQUENTIAL.multiplier(5000) == pytest.approx(3.035, abs=1e-3)
    # Wider than the fixed interval everywhere, decreasing towards t*, slowly growing after.
    ms = np.array([SEQUENTIAL.multiplier(n) for n in (100, 1000, 5000, 10**5, 10**7)])
    assert (ms > FIXED.multiplier(1)).all()
    widths = ms / np.sqrt([100, 1000, 5000, 10**5, 10**7])
    assert (np.diff(widths) < 0).all()


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_tuned_r_squared_is_nearly_width_optimal_at_tuning_rows(alpha: float) -> None:
    t = 5000

    def half_width(log_r2: float) -> float:
        r2 = math.exp(log_r2)
        return math.sqrt(2 * (t * r2 + 1) / (t * t * r2) * math.log(math.sqrt(t * r2 + 1) / alpha))

    best = minimize_scalar(half_width, bounds=(-20, 0), method="bounded", options={"xatol": 1e-9})
    tuned = tuned_r_squared(alpha, t)
    # The closed form approximates the minimiser within 5 %, the width within 0.01 %.
    assert tuned == pytest.approx(math.exp(best.x), rel=0.05)
    assert half_width(math.log(tuned)) == pytest.approx(best.fun, rel=1e-4)


@pytest.mark.parametrize("boundary", [SEQUENTIAL, FIXED, Boundary(alpha=0.01, tuning_rows=300)])
def test_p_value_is_below_alpha_exactly_when_zero_leaves_the_interval(boundary: Boundary) -> None:
    for n in (2, 50, 800, 5000, 10**6):
        for z in np.linspace(0.0, 8.0, 161):
            lo, hi = boundary.interval(float(z) * 0.3, 0.3, n)
            p = boundary.p_value(float(z) * 0.3, 0.3, n)
            assert 0 <= p <= 1
            if abs(z - boundary.multiplier(n)) > 1e-6:
                assert (p <= boundary.alpha) == (lo > 0 or hi < 0)
        m = boundary.multiplier(n)
        assert boundary.p_value(m * 0.3, 0.3, n) == pytest.approx(boundary.alpha, rel=1e-9)


def test_fixed_p_value_is_the_z_test_and_edges() -> None:
    assert FIXED.p_value(1.0, 0.5, 100) == pytest.approx(2 * norm.sf(2.0), rel=1e-12)
    assert SEQUENTIAL.p_value(0.0, 1.0, 100) == 1.0
    assert SEQUENTIAL.p_value(1.0, 0.0, 100) == 0.0
    assert SEQUENTIAL.p_value(0.0, 0.0, 100) == 1.0
    assert SEQUENTIAL.p_value(1.0, 1.0, 0) == 1.0
    assert math.isnan(SEQUENTIAL.p_value(math.nan, 1.0, 10))
    assert all(math.isnan(x) for x in SEQUENTIAL.interval(1.0, math.nan, 10))
    assert SEQUENTIAL.interval(0.5, 1.0, 10, bounds=(-1.0, 1.0)) == (-1.0, 1.0)
    assert SEQUENTIAL.interval(1.0, 1.0, 0) == (-math.inf, math.inf)
    with pytest.raises(ValueError, match="alpha"):
        Boundary(alpha=1.5)


def test_mean_difference_uses_the_request_clustered_se() -> None:
    rng = np.random.default_rng(11)
    rows_per_request = rng.integers(1, 4, size=400)
    cluster = np.repeat(np.arange(400), rows_per_request).astype(np.int64)
    shared = rng.normal(size=400)[cluster]  # rows of a request are correlated
    differences = 0.1 + shared + rng.normal(size=len(cluster))
    result = mean_difference(differences, cluster, 400, FIXED)
    mean, p_t = clustered_paired_t(differences, cluster, 400)
    assert result.estimate == pytest.approx(mean, rel=1e-12)
    # Normal against Student-t with 399 degrees of freedom: close, not equal.
    assert result.p_value == pytest.approx(p_t, rel=0.05)
    # One-row requests: s / sqrt(n).
    one = rng.normal(size=300)
    ids, k = dense_clusters(np.arange(300))
    assert clustered_mean_se(one, ids, k)[1] == pytest.approx(
        one.std(ddof=1) / math.sqrt(300), rel=1e-12
    )
    lo, hi = mean_difference(differences, cluster, 400, SEQUENTIAL).ci
    assert hi - lo > result.ci[1] - result.ci[0]
    assert math.isnan(mean_difference(one[:1], ids[:1], 1, SEQUENTIAL).estimate)


def test_auc_difference_reads_delong() -> None:
    result = auc_difference(0.02, 1e-4, 5000, SEQUENTIAL)
    assert result.ci == pytest.approx((0.02 - 0.03035, 0.02 + 0.03035), abs=1e-4)
    assert result.p_value == pytest.approx(SEQUENTIAL.p_value(0.02, 0.01, 5000))
    assert auc_difference(0.9, 1.0, 5000, SEQUENTIAL).ci == (-1.0, 1.0)
    assert math.isnan(auc_difference(math.nan, math.nan, 5000, SEQUENTIAL).p_value)


# --- simulation helpers -----------------------------------------------------------------


def _missed_at_any_look(
    estimate: FloatArray, se: FloatArray, truth: float, boundary: Boundary, look_rows: np.ndarray
) -> float:
    outside = np.abs(estimate - truth) > multipliers(boundary, look_rows) * se
    return float(outside.any(axis=1).mean())


def _classifier_losses(
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray, float, float]:
    """Per-row log-loss and Brier differences (champion minus challenger), and the truths.

    x ~ N(0, 1), P(y = 1 | x) = expit(1.5 x); the champion predicts expit(x), the
    challenger expit(1.4 x + 0.2). Truths by Gauss-Hermite quadrature over x (exact to
    machine precision for these smooth integrands).
    """

    x = rng.normal(size=(RUNS, LOOKS * PER_LOOK))
    y = rng.random(size=x.shape) < expit(1.5 * x)
    q1, q2 = expit(x), expit(1.4 * x + 0.2)
    log_loss = np.where(y, np.log(q2) - np.log(q1), np.log1p(-q2) - np.log1p(-q1))
    brier = (y - q1) ** 2 - (y - q2) ** 2
    truth_log_loss, truth_brier = classifier_truths()
    return log_loss, brier, truth_log_loss, truth_brier


# --- time-uniform coverage --------------------------------------------------------------


def test_coverage_of_log_loss_and_brier_differences_at_every_look() -> None:
    log_loss, brier, truth_log_loss, truth_brier = _classifier_losses(np.random.default_rng(21))
    # The challenger is the closer to the true probabilities, on both losses.
    assert truth_log_loss > 0
    assert truth_brier > 0
    for differences, truth in ((log_loss, truth_log_loss), (brier, truth_brier)):
        mean, se = running_mean_se(differences, LOOK_ROWS)
        missed = _missed_at_any_look(mean, se, truth, SEQUENTIAL, LOOK_ROWS)
        print(f"missed at some look: {missed:.3f}")
        assert missed <= 0.05


def test_coverage_of_heavy_tailed_squared_error_differences_at_every_look() -> None:
    """y = x + t(3) noise; champion 0.8 x, challenger x + 0.1.

    d = (y - 0.8 x)^2 - (y - x - 0.1)^2 has mean 0.04 E[x^2] - 0.01 = 0.03 exactly (the
    noise's square cancels in the pair; its t(3) tails stay in the cross terms).
    """
    rng = np.random.default_rng(22)
    x = rng.normal(size=(RUNS, LOOKS * PER_LOOK))
    y = x + rng.standard_t(3, size=x.shape)
    differences = (y - 0.8 * x) ** 2 - (y - x - 0.1) ** 2
    mean, se = running_mean_se(differences, LOOK_ROWS)
    missed = _missed_at_any_look(mean, se, 0.03, SEQUENTIAL, LOOK_ROWS)
    fixed_missed = _missed_at_any_look(mean, se, 0.03, FIXED, LOOK_ROWS)
    print(f"missed at some look: sequential {missed:.3f}, fixed {fixed_missed:.3f}")
    assert missed <= 0.05
    assert fixed_missed > 0.10  # the fixed interval does not cover over 30 looks


def _binormal_scores(
    rng: np.random.Generator, runs: int, rows: int
) -> tuple[FloatArray, FloatArray, BoolArray, float]:
    """30 % positives; champion N(1.2 y, 1), challenger N(1.5 y, 1), noise correlation 0.6.

    True AUCs Phi(mu / sqrt(2)), so the true difference is exact.
    """
    positive = rng.random(size=(runs, rows)) < 0.3
    noise_a = rng.normal(size=(runs, rows))
    noise_b = 0.6 * noise_a + 0.8 * rng.normal(size=(runs, rows))
    champion = 1.2 * positive + noise_a
    challenger = 1.5 * positive + noise_b
    truth = float(norm.cdf(1.5 / math.sqrt(2)) - norm.cdf(1.2 / math.sqrt(2)))
    return champion, challenger, positive, truth


def test_vectorised_delong_equals_paired_delong() -> None:
    champion, challenger, positive, _ = _binormal_scores(np.random.default_rng(30), 3, 700)
    looks = np.array([150, 700])
    difference, se = vectorised_delong(champion, challenger, positive, looks)
    for run in range(3):
        for j, n in enumerate(looks):
            cluster, k = dense_clusters(np.arange(n))
            result = paired_delong(
                champion[run, :n], challenger[run, :n], positive[run, :n].astype(float), cluster, k
            )
            assert difference[run, j] == pytest.approx(result.difference, rel=1e-10)
            assert se[run, j] == pytest.approx(math.sqrt(result.var_difference), rel=1e-10)


def test_coverage_of_auc_differences_at_every_look() -> None:
    """DeLong through the boundary, 1,000 runs x 30 looks.

    DeLong is recomputed at each look by `vectorised_delong` (checked equal to
    `paired_delong` above): calling `paired_delong` 30,000 times would take minutes.
    Runs are processed in chunks of 250 to keep the (runs, rows) work arrays in cache.
    """
    rng = np.random.default_rng(31)
    missed = []
    for _ in range(RUNS // 250):
        champion, challenger, positive, truth = _binormal_scores(rng, 250, LOOKS * PER_LOOK)
        difference, se = vectorised_delong(champion, challenger, positive, LOOK_ROWS)
        outside = np.abs(difference - truth) > multipliers(SEQUENTIAL, LOOK_ROWS) * se
        missed.append(outside.any(axis=1))
    rate = float(np.concatenate(missed).mean())
    print(f"AUC difference {truth:.4f}, missed at some look: {rate:.3f}")
    assert rate <= 0.05


# --- decisions ----------------------------------------------------------------------------


def test_daily_peeking_at_an_aa_test_rarely_promotes() -> None:
    """A/A: 30 daily looks at 100 more rows, t(3) differences (true mean 0).

    "Promote" is the lower bound above zero at any look with at least 200 rows. The
    sequential boundary keeps that under 5 %; the fixed 95 % interval read daily does
    not (about 10-13 %, against 2.5 % for a single one-sided look).
    """
    rng = np.random.default_rng(41)
    differences = rng.standard_t(3, size=(RUNS, LOOKS * PER_LOOK))
    looks = LOOK_ROWS[LOOK_ROWS >= 200]
    mean, se = running_mean_se(differences, looks)
    rates = {}
    for boundary in (SEQUENTIAL, FIXED):
        lower = mean - multipliers(boundary, looks) * se
        rates[boundary.mode] = float((lower > 0).any(axis=1).mean())
    print(f"false promotion: sequential {rates['sequential']:.3f}, fixed {rates['fixed']:.3f}")
    assert rates["sequential"] <= 0.05
    assert rates["fixed"] > 0.07


def test_power_by_day_30_for_an_effect_of_4_5_standard_errors_at_tuning_rows() -> None:
    """Looks at round(5000 k / 30) rows, k = 1..30 (about 167 rows a day; day 30 is the
    5,000 `tuning_rows`), burn-in 200 rows; t(3) / sqrt(3) noise (sd 1), mean
    4.5 / sqrt(5000). The last look alone detects with probability
    Phi(4.5 - 3.035) = 93 %."""
    rng = np.random.default_rng(42)
    effect = 4.5 / math.sqrt(SEQUENTIAL.tuning_rows)
    differences = effect + rng.standard_t(3, size=(RUNS, 5000)) / math.sqrt(3)
    looks = np.round(5000 * np.arange(1, 31) / 30).astype(np.int64)
    looks = looks[looks >= 200]
    mean, se = running_mean_se(differences, looks)
    lower = mean - multipliers(SEQUENTIAL, looks) * se
    power = float((lower > 0).any(axis=1).mean())
    print(f"promoted by day 30: {power:.3f}")
    assert power >= 0.85
