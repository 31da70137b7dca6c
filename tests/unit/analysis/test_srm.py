"""SRM: detects a 47 / 53 split, and stays quiet in A/A runs looked at every day.

The A/A simulations evaluate the statistic from cumulative sufficient statistics (served
count, and the log normaliser on the prior grid) at each daily look, for all runs at once.
"""

from __future__ import annotations

import numpy as np
import pytest

from contender.analysis.data import FloatArray
from contender.analysis.srm import (
    log_mixture_ratio,
    log_normaliser,
    mixture_prior,
    p_value_from_log_ratio,
    srm_test,
)

N_RUNS = 2000
N_DAYS = 30
PER_DAY = 1000
ALPHA = 0.001


def _aa_firing_rates(
    daily_weights: FloatArray, rng: np.random.Generator, alphas: tuple[float, ...]
) -> list[float]:
    """Per alpha: the share of A/A runs whose p-value drops below it at some daily look."""
    prior = mixture_prior()
    served = rng.binomial(PER_DAY, daily_weights, size=(N_RUNS, N_DAYS))
    day_normaliser = np.stack([log_normaliser(np.full(PER_DAY, w), prior) for w in daily_weights])
    log_ratio = log_mixture_ratio(
        np.cumsum(served, axis=1), np.cumsum(day_normaliser, axis=0), prior
    )
    p_values = p_value_from_log_ratio(log_ratio)
    return [float((p_values < alpha).any(axis=1).mean()) for alpha in alphas]


def test_a_47_percent_share_against_a_weight_of_half_fails_over_20000_requests() -> None:
    rng = np.random.default_rng(11)
    served = np.zeros(20_000, dtype=np.bool_)
    served[:9_400] = True  # exactly 47 %
    result = srm_test(rng.permutation(served), np.full(20_000, 0.5))
    assert result.failed
    assert result.p_value < 1e-6  # ~1e-14 here: far past alpha, not a borderline call
    assert result.observed_share == pytest.approx(0.47)
    assert result.expected_share == pytest.approx(0.5)
    assert result.n == 20_000


def test_a_47_percent_router_fails_in_every_one_of_20_seeds() -> None:
    rng = np.random.default_rng(12)
    served = rng.random((20, 20_000)) < 0.47
    results = [srm_test(row, np.full(20_000, 0.5)) for row in served]
    assert all(result.failed for result in results)


def test_an_honest_split_passes_and_uninformative_weights_are_ignored() -> None:
    rng = np.random.default_rng(13)
    weights = np.where(np.arange(20_000) < 5_000, 0.1, 0.5)
    served = rng.random(20_000) < weights
    honest = srm_test(served, weights)
    assert not honest.failed
    assert honest.p_value > 0.01
    # Shadow (weight 0), all-in (1) and unknown weights carry no information.
    noise = np.concatenate([served, np.ones(300, bool), np.zeros(300, bool), np.ones(50, bool)])
    padded = np.concatenate([weights, np.zeros(300), np.ones(300), np.full(50, np.nan)])
    assert srm_test(noise, padded) == honest
    assert srm_test(np.ones(5, bool), np.zeros(5)).n == 0


def test_the_public_test_equals_the_statistic_on_sufficient_statistics() -> None:
    rng = np.random.default_rng(14)
    weights = rng.choice([0.1, 0.3, 0.5], size=5_000)
    served = rng.random(5_000) < weights * 0.95
    prior = mixture_prior()
    # The mixture likelihood ratio straight from its definition: per grid point, the product
    # over requests of p_i(delta)^x_i (1 - p_i(delta))^(1 - x_i) / (w_i^x_i (1 - w_i)^(1 - x_i)).
    odds = weights / (1 - weights)
    p = 1 / (1 + 1 / (odds[None, :] * np.exp(prior.delta[:, None])))
    log_lr = np.where(served, np.log(p / weights), np.log((1 - p) / (1 - weights))).sum(axis=1)
    mixture = float(np.exp(prior.log_weight + log_lr).sum())
    assert srm_test(served, weights).p_value == pytest.approx(min(1.0, 1 / mixture), rel=1e-9)


@pytest.mark.parametrize(
    ("daily_weights", "seed"),
    [
        pytest.param(np.full(N_DAYS, 0.5), 15, id="weight 0.5"),
        pytest.param(np.where(np.arange(N_DAYS) < 10, 0.1, 0.5), 16, id="0.1 then 0.5 at day 10"),
    ],
)
def test_aa_runs_with_30_daily_looks_fire_in_at_most_0_2_percent(
    daily_weights: FloatArray, seed: int
) -> None:
    """2,000 A/A runs x 30 looks x 1,000 requests a day.

    At alpha 0.001 (expected <= 2 runs) it may fire in at most 4 (0.2 %). Ville's bound
    holds at every alpha, so the looser 0.05 is checked too: there a run-count of 2,000
    can tell a valid test from one that is not (a z-test at every look fires in ~30 %).
    """
    strict, loose = _aa_firing_rates(daily_weights, np.random.default_rng(seed), (ALPHA, 0.05))
    assert strict <= 0.002
    assert loose <= 0.05


def test_a_ramp_with_a_lagging_router_is_detected() -> None:
    """The weight goes 0.1 -> 0.5 at day 10 but the router serves 0.45 afterwards."""
    rng = np.random.default_rng(17)
    weights = np.repeat(np.where(np.arange(N_DAYS) < 10, 0.1, 0.5), PER_DAY)
    served = rng.random(len(weights)) < np.where(weights == 0.5, 0.45, 0.1)
    assert srm_test(served, weights).failed
