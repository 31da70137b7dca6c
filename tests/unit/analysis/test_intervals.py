"""Intervals: DeLong against its definition and the bootstrap, coverage in simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from contender.analysis.delong import paired_delong
from contender.analysis.intervals import (
    assign_buckets,
    bootstrap_p_value,
    bootstrap_ratio_metrics,
    dense_clusters,
    percentile_interval,
    resampled_sums,
)
from contender.analysis.metrics import auc, ratio_parts
from contender.analysis.quality import LabeledPairs, compare_quality
from contender.analysis.task import Task
from tests.unit.analysis.factories import classifier_data

N_DATASETS = 200


def _naive_delong_variance(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> float:
    """Classic DeLong (1988) for the paired difference, O(M N), straight from the paper."""

    def placements(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = scores[labels == 1], scores[labels == 0]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (v10_a, v01_a), (v10_b, v01_b) = placements(a), placements(b)
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    contrast = np.array([-1.0, 1.0])
    m, n = len(v10_a), len(v01_a)
    return float(contrast @ (s10 / m + s01 / n) @ contrast)


def test_delong_matches_the_classic_formula_for_one_row_requests() -> None:
    data = classifier_data(300, np.random.default_rng(3), 1.0, 1.3)
    a, b = data.champion.round(2), data.challenger.round(2)  # with ties
    cluster, k = dense_clusters(np.arange(300))
    result = paired_delong(a, b, data.labels, cluster, k)
    assert result.auc_champion == pytest.approx(auc(a, data.labels), abs=1e-12)
    assert result.auc_challenger == pytest.approx(auc(b, data.labels), abs=1e-12)
    # Obuchowski's K/(K-1) scaling differs from DeLong's 1/(M-1), 1/(N-1) by under 1 %.
    naive = _naive_delong_variance(a, b, data.labels)
    assert result.var_difference == pytest.approx(naive, rel=0.01)


def test_delong_variance_agrees_with_a_bootstrap() -> None:
    rng = np.random.default_rng(4)
    data = classifier_data(2000, rng, 1.0, 1.2)
    cluster, k = dense_clusters(np.arange(2000))
    result = paired_delong(data.champion, data.challenger, data.labels, cluster, k)
    differences = []
    for _ in range(400):
        i = rng.integers(0, 2000, 2000)
        differences.append(
            auc(data.challenger[i], data.labels[i]) - auc(data.champion[i], data.labels[i])
        )
    assert result.var_difference == pytest.approx(np.var(differences), rel=0.2)


def test_clustered_delong_widens_for_correlated_rows() -> None:
    # Each request repeats one row 5 times: 5x the rows, no more information.
    data = classifier_data(400, np.random.default_rng(5), 1.0, 1.2)
    repeat = np.repeat(np.arange(400), 5)
    a, b, labels = data.champion[repeat], data.challenger[repeat], data.labels[repeat]
    as_rows = paired_delong(a, b, labels, *dense_clusters(np.arange(2000)))
    as_requests = paired_delong(a, b, labels, *dense_clusters(repeat))
    assert as_requests.var_difference == pytest.approx(5 * as_rows.var_difference, rel=0.05)


def test_bucketing_keeps_small_logs_exact_and_caps_large_ones() -> None:
    rng = np.random.default_rng(6)
    small, n_small = assign_buckets(100, rng, max_buckets=4096)
    assert n_small == 100
    assert (small == np.arange(100)).all()
    large, n_large = assign_buckets(10_000, rng, max_buckets=1000)
    assert n_large == 1000
    assert set(np.bincount(large)) == {10}  # equal-size buckets


def test_resampled_sums_are_multinomial_resamples() -> None:
    sums = np.arange(1.0, 6.0)[:, None]
    replicated = resampled_sums(sums, 600, np.random.default_rng(7))
    # Each replicate draws 5 buckets with replacement: mean total = 5 x mean bucket = 15.
    assert replicated.mean() == pytest.approx(15.0, rel=0.05)
    assert replicated.min() >= 5
    assert replicated.max() <= 25


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    data = classifier_data(500, np.random.default_rng(8))
    parts = {
        "accuracy": (
            ratio_parts("accuracy", data.champion, data.labels, 0.5),
            ratio_parts("accuracy", data.challenger, data.labels, 0.5),
        )
    }
    cluster, k = dense_clusters(np.arange(500))
    first = bootstrap_ratio_metrics(parts, cluster, k, np.random.default_rng(9), 300)
    again = bootstrap_ratio_metrics(parts, cluster, k, np.random.default_rng(9), 300)
    assert (first["accuracy"].difference == again["accuracy"].difference).all()


def test_bootstrap_p_value_of_identical_models_is_one() -> None:
    assert bootstrap_p_value(np.zeros(100)) == 1.0
    assert bootstrap_p_value(np.full(100, 0.1)) == pytest.approx(2 / 101)
    assert percentile_interval(np.array([np.nan])) != percentile_interval(np.array([np.nan]))


def _covers(ci: tuple[float, float], truth: float) -> bool:
    return ci[0] <= truth <= ci[1]


def test_auc_difference_interval_covers_the_truth_at_its_nominal_rate() -> None:
    # Binormal model: positives' latent score N(mu, 1), negatives N(0, 1): AUC = Phi(mu/sqrt2).
    rng = np.random.default_rng(10)
    mu_a, mu_b, n = 1.0, 1.3, 300
    truth = norm.cdf(mu_b / np.sqrt(2)) - norm.cdf(mu_a / np.sqrt(2))
    hits = 0
    for _ in range(N_DATASETS):
        labels = (rng.random(n) < 0.5).astype(float)
        shared = rng.normal(size=n)
        a = mu_a * labels + np.sqrt(0.5) * (shared + rng.normal(size=n))
        b = mu_b * labels + np.sqrt(0.5) * (shared + rng.normal(size=n))
        result = paired_delong(a, b, labels, *dense_clusters(np.arange(n)))
        half = 1.96 * np.sqrt(result.var_difference)
        hits += _covers((result.difference - half, result.difference + half), truth)
    assert 0.90 <= hits / N_DATASETS <= 0.99


def test_accuracy_difference_interval_covers_the_truth_at_its_nominal_rate() -> None:
    # Champion right with probability 0.70, challenger 0.75, their mistakes correlated.
    rng = np.random.default_rng(11)
    n, hits = 300, 0
    for _ in range(N_DATASETS):
        labels = (rng.random(n) < 0.5).astype(float)
        u = rng.random(n)
        u_b = np.where(rng.random(n) < 0.5, u, rng.random(n))
        right_a, right_b = u < 0.70, u_b < 0.75
        a = np.where(right_a, labels, 1 - labels) * 0.8 + 0.1
        b = np.where(right_b, labels, 1 - labels) * 0.8 + 0.1
        pairs = LabeledPairs(a, b, labels, np.arange(n))
        quality = compare_quality(pairs, Task.CLASSIFIER, 0.5, rng, n_replicates=400)
        hits += _covers(quality.differences["accuracy"].ci, 0.05)
    assert 0.90 <= hits / N_DATASETS <= 0.99


def test_rmse_interval_covers_the_truth_with_correlated_rows_in_requests() -> None:
    # 100 requests of 5 rows; a request-level error shared by its rows. Error sd: 1 vs 0.8.
    rng = np.random.default_rng(12)
    n_requests, per, hits = 100, 5, 0
    request = np.repeat(np.arange(n_requests), per)
    for _ in range(N_DATASETS):
        labels = rng.normal(size=n_requests * per)
        shared = rng.normal(size=n_requests)[request]
        error_a = np.sqrt(0.5) * (shared + rng.normal(size=len(labels)))
        error_b = 0.8 * np.sqrt(0.5) * (shared + rng.normal(size=len(labels)))
        pairs = LabeledPairs(labels + error_a, labels + error_b, labels, request)
        quality = compare_quality(pairs, Task.REGRESSOR, 0.5, rng, n_replicates=400)
        hits += _covers(quality.differences["rmse"].ci, 0.8 - 1.0)
    assert 0.90 <= hits / N_DATASETS <= 0.99
