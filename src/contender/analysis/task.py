"""Which kind of model is being compared, and which metrics fit it.

`detect_task` decides from the logged predictions and labels:

1. a list-valued prediction row anywhere (class probabilities, one column per class)
   -> classifier; the score is the last (positive) column;
2. otherwise (scalar predictions) -> classifier when every scored value lies in [0, 1]
   and every known label is 0 or 1 (a probability or a hard 0/1 class); with no labels
   at all, values in [0, 1] alone decide;
3. anything else -> regressor.

A classifier here is binary: its labels must be 0 or 1 (true/false read as 1/0).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from contender.analysis.data import FloatArray, LoggedRows
from contender.errors import ConfigError


class Task(StrEnum):
    CLASSIFIER = "classifier"
    REGRESSOR = "regressor"


CLASSIFIER_METRICS = ("auc", "precision", "recall", "accuracy", "log_loss", "brier")
REGRESSOR_METRICS = ("rmse", "mae")
HIGHER_IS_BETTER = {
    "auc": True,
    "precision": True,
    "recall": True,
    "accuracy": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
}


def metrics_for(task: Task) -> tuple[str, ...]:
    return CLASSIFIER_METRICS if task is Task.CLASSIFIER else REGRESSOR_METRICS


def primary_metric(task: Task, requested: str | None) -> str:
    """`--metric`, checked against the task; default auc (classifier) or rmse (regressor)."""
    allowed = metrics_for(task)
    if requested is None:
        return allowed[0]
    name = requested.strip().lower().replace("-", "_")
    if name not in allowed:
        raise ConfigError(
            f"--metric {requested!r} does not fit a {task}; use one of {', '.join(allowed)}"
        )
    return name


def _is_binary(values: FloatArray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


def detect_task(rows: LoggedRows) -> Task:
    """Classifier or regressor, by the rule in the module docstring."""
    if rows.champion.list_valued or rows.challenger.list_valued:
        return Task.CLASSIFIER
    scores = np.concatenate([rows.champion.scores, rows.challenger.scores])
    scores = scores[~np.isnan(scores)]
    labels = rows.labels[~np.isnan(rows.labels)]
    in_unit_interval = bool(((scores >= 0.0) & (scores <= 1.0)).all())
    if in_unit_interval and _is_binary(labels):
        return Task.CLASSIFIER
    return Task.REGRESSOR


def check_binary_labels(labels: FloatArray) -> None:
    """Classifier labels must be 0/1; say which value is not."""
    known = labels[~np.isnan(labels)]
    if not _is_binary(known):
        other = known[~np.isin(known, (0.0, 1.0))][0]
        raise ConfigError(
            f"a classifier's labels must be 0 or 1 (the positive class is the last "
            f"probability column); found {other:g}"
        )
