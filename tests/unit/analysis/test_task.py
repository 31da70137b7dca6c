"""Task detection and metric choice."""

from __future__ import annotations

import numpy as np
import pytest

from contender.analysis.task import Task, check_binary_labels, detect_task, primary_metric
from contender.errors import ConfigError
from tests.unit.analysis.factories import arm_log, logged_rows


def _rows(scores: list[float], labels: list[float], list_valued: bool = False) -> Task:
    values = np.asarray(scores)
    return detect_task(
        logged_rows(
            arm_log(values, list_valued=list_valued),
            arm_log(values, list_valued=list_valued),
            np.asarray(labels),
        )
    )


def test_list_valued_rows_make_a_classifier() -> None:
    assert _rows([0.2, 5.0], [3.0, 4.0], list_valued=True) is Task.CLASSIFIER


def test_unit_interval_scores_with_binary_labels_make_a_classifier() -> None:
    assert _rows([0.2, 0.9, 1.0], [0.0, 1.0, np.nan]) is Task.CLASSIFIER


def test_non_binary_labels_make_a_regressor() -> None:
    assert _rows([0.2, 0.9], [0.3, 0.7]) is Task.REGRESSOR


def test_values_outside_the_unit_interval_make_a_regressor() -> None:
    assert _rows([0.2, 1.5], [0.0, 1.0]) is Task.REGRESSOR


def test_without_labels_the_scores_decide() -> None:
    assert _rows([0.2, 0.4], [np.nan, np.nan]) is Task.CLASSIFIER
    assert _rows([12.0, 40.0], [np.nan, np.nan]) is Task.REGRESSOR


def test_classifier_labels_must_be_binary() -> None:
    check_binary_labels(np.array([0.0, 1.0, np.nan]))
    with pytest.raises(ConfigError, match="found 2"):
        check_binary_labels(np.array([0.0, 2.0]))


def test_primary_metric_defaults_and_checks() -> None:
    assert primary_metric(Task.CLASSIFIER, None) == "auc"
    assert primary_metric(Task.REGRESSOR, None) == "rmse"
    assert primary_metric(Task.CLASSIFIER, "Log-Loss") == "log_loss"
    with pytest.raises(ConfigError, match="--metric 'rmse' does not fit a classifier"):
        primary_metric(Task.CLASSIFIER, "rmse")
