"""Every point metric against scikit-learn / numpy computed independently on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from contender.analysis.metrics import (
    agreement,
    auc,
    latency_summary,
    metric_value,
)
from tests.unit.analysis.factories import classifier_data


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    simulated = classifier_data(3000, np.random.default_rng(1))
    # Rounded scores create ties, which the rank formula must handle as sklearn does.
    return simulated.champion.round(2), simulated.labels


def test_auc_matches_sklearn_with_ties(data: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = data
    assert auc(scores, labels) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_threshold_metrics_match_sklearn(
    data: tuple[np.ndarray, np.ndarray], threshold: float
) -> None:
    scores, labels = data
    predicted = (scores >= threshold).astype(int)
    expected = {
        "precision": sk.precision_score(labels, predicted),
        "recall": sk.recall_score(labels, predicted),
        "accuracy": sk.accuracy_score(labels, predicted),
    }
    for name, value in expected.items():
        assert metric_value(name, scores, labels, threshold) == pytest.approx(value, abs=1e-12)


def test_log_loss_matches_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = data
    scores = np.clip(scores, 0.01, 0.99)  # away from the clipping both apply
    value = metric_value("log_loss", scores, labels, 0.5)
    assert value == pytest.approx(sk.log_loss(labels, scores), rel=1e-12)


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    labels = rng.normal(50, 10, 2000)
    predictions = labels + rng.normal(0, 3, 2000)
    rmse = metric_value("rmse", predictions, labels, 0.5)
    mae = metric_value("mae", predictions, labels, 0.5)
    assert rmse == pytest.approx(sk.root_mean_squared_error(labels, predictions), rel=1e-12)
    assert mae == pytest.approx(sk.mean_absolute_error(labels, predictions), rel=1e-12)


def test_undefined_metrics_are_nan() -> None:
    labels = np.array([1.0, 1.0, 1.0])
    scores = np.array([0.1, 0.2, 0.3])
    assert np.isnan(auc(scores, labels))
    assert np.isnan(metric_value("precision", scores, labels, 0.5))  # nothing predicted


def test_agreement_for_classifiers_and_regressors() -> None:
    a = np.array([0.2, 0.6, 0.7, 0.4])
    b = np.array([0.3, 0.4, 0.9, 0.5])
    assert agreement(a, b, classifier=True, threshold=0.5) == 0.5
    values = np.array([0.0, 10.0, 20.0, 30.0])  # std 11.18: tolerance 1.118
    close = values + np.array([0.5, -1.0, 2.0, 0.0])
    assert agreement(values, close, classifier=False, threshold=0.5) == 0.75


def test_latency_summary_matches_numpy_and_ignores_missing() -> None:
    latency = np.r_[np.arange(1.0, 101.0), np.nan]
    summary = latency_summary(latency)
    expected = np.percentile(np.arange(1.0, 101.0), [50, 95, 99])
    assert (summary.p50, summary.p95, summary.p99) == pytest.approx(tuple(expected))
    assert np.isnan(latency_summary(np.array([np.nan])).p99)
