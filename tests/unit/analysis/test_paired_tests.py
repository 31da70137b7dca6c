"""Paired tests against SciPy computed independently."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from contender.analysis.intervals import dense_clusters
from contender.analysis.paired_tests import (
    clustered_paired_t,
    excess_failure_p_value,
    mcnemar_p_value,
)


def test_mcnemar_is_the_exact_binomial_test_on_discordant_rows() -> None:
    rng = np.random.default_rng(20)
    champion = rng.random(1000) < 0.70
    challenger = np.where(rng.random(1000) < 0.8, champion, rng.random(1000) < 0.8)
    b = int((champion & ~challenger).sum())
    c = int((~champion & challenger).sum())
    # Independent check: the exact two-sided McNemar p-value summed from the binomial pmf.
    n, k = b + c, min(b, c)
    expected = min(1.0, 2 * stats.binom.cdf(k, n, 0.5))
    assert mcnemar_p_value(champion, challenger) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_without_discordant_rows_is_one() -> None:
    same = np.array([True, False, True])
    assert mcnemar_p_value(same, same) == 1.0


def test_clustered_t_equals_the_paired_t_test_for_one_row_requests() -> None:
    rng = np.random.default_rng(21)
    a = rng.normal(1.0, 1.0, 400)
    b = a + rng.normal(0.1, 0.5, 400)
    mean, p_value = clustered_paired_t(b - a, *dense_clusters(np.arange(400)))
    expected = stats.ttest_rel(b, a)
    assert mean == pytest.approx(float(np.mean(b - a)))
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_clustered_t_is_more_cautious_with_correlated_rows() -> None:
    rng = np.random.default_rng(22)
    request = np.repeat(np.arange(50), 8)
    differences = 0.1 + rng.normal(size=50)[request] + 0.2 * rng.normal(size=400)
    _, clustered = clustered_paired_t(differences, *dense_clusters(request))
    _, as_rows = clustered_paired_t(differences, *dense_clusters(np.arange(400)))
    assert clustered > as_rows


def test_excess_failures_are_one_sided() -> None:
    champion = np.zeros(1000, bool)
    challenger = np.zeros(1000, bool)
    challenger[:30] = True
    assert excess_failure_p_value(champion, challenger) < 1e-6
    assert excess_failure_p_value(challenger, champion) == 1.0
    assert excess_failure_p_value(champion, champion) == 1.0
