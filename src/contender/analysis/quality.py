"""Quality metrics of both models on the same labeled rows, with intervals and tests.

Per metric and model: a point value and a 95 % interval; per metric: the difference
(challenger minus champion) with its interval and a p-value.

Two kinds of inference (`sequential.Boundary`), for every interval and p-value alike:

- `fixed` (one pre-planned look):

| metric | intervals | p-value of the difference |
|---|---|---|
| auc | DeLong, clustered by request | DeLong z-test |
| accuracy | bootstrap over requests | McNemar exact |
| precision, recall | bootstrap over requests | paired bootstrap |
| log_loss, brier, rmse, mae | bootstrap over requests | clustered paired t on per-row losses |

- `sequential` (the default; always valid, so the report may be read every day): every
  interval is `estimate +- multiplier(n) * se` on the confidence-sequence boundary,
  `n` the number of labeled requests, and every p-value the always-valid one. The
  standard error: DeLong's for AUC; the request-clustered one of the per-row
  differences for metrics that are means (accuracy, log_loss, brier, mae, and for
  rmse's p-value, the squared errors); the bootstrap's spread for the rest (each
  arm's value, precision, recall, rmse's interval). The time-uniform coverage of the
  mean and AUC boundaries is checked by simulation (`tests/unit/analysis/test_sequential.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contender.analysis.data import FloatArray, IntArray
from contender.analysis.delong import normal_interval, normal_p_value, paired_delong
from contender.analysis.intervals import (
    N_REPLICATES,
    PairedReplicates,
    bootstrap_p_value,
    bootstrap_ratio_metrics,
    dense_clusters,
    percentile_interval,
)
from contender.analysis.metrics import RatioParts, ratio_parts, ratio_value
from contender.analysis.paired_tests import clustered_paired_t, mcnemar_p_value
from contender.analysis.sequential import Boundary, auc_difference, mean_difference
from contender.analysis.task import Task, metrics_for

BOOTSTRAP_CI = "bootstrap percentile over requests"
FIXED = Boundary("fixed")
_NAN_PAIR = (float("nan"), float("nan"))


@dataclass(frozen=True)
class Estimate:
    value: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class Difference:
    """Challenger minus champion on the same rows."""

    estimate: float
    ci: tuple[float, float]
    p_value: float
    test: str
    ci_method: str
    se: float = float("nan")
    """Its standard error on the labeled requests: what `power` scales from."""


@dataclass(frozen=True)
class QualityComparison:
    champion: dict[str, Estimate]
    challenger: dict[str, Estimate]
    differences: dict[str, Difference]
    n_requests: int = 0
    """Labeled requests: the independent units of every interval."""
    auc_correlation: float = float("nan")
    """Correlation of the two AUC estimates (DeLong): what paired AUC power needs."""


@dataclass(frozen=True)
class LabeledPairs:
    """The rows both models scored and that have a label, with their requests."""

    champion: FloatArray
    challenger: FloatArray
    labels: FloatArray
    row_request: IntArray

    def __len__(self) -> int:
        return len(self.labels)


def compare_quality(
    pairs: LabeledPairs,
    task: Task,
    threshold: float,
    rng: np.random.Generator,
    n_replicates: int = N_REPLICATES,
    boundary: Boundary = FIXED,
) -> QualityComparison:
    """Every metric of the task on `pairs` (at least one row), in the task's metric order."""
    cluster, n_clusters = dense_clusters(pairs.row_request)
    names = metrics_for(task)
    parts = {
        name: (
            ratio_parts(name, pairs.champion, pairs.labels, threshold),
            ratio_parts(name, pairs.challenger, pairs.labels, threshold),
        )
        for name in names
        if name != "auc"
    }
    replicates = bootstrap_ratio_metrics(parts, cluster, n_clusters, rng, n_replicates)
    result = QualityComparison({}, {}, {}, n_clusters)
    if "auc" in names:
        result = _add_auc(result, pairs, cluster, n_clusters, boundary)
    for name, pair in parts.items():
        if boundary.mode == "fixed":
            test, p_value = _paired_test(name, pair, replicates[name], cluster, n_clusters)
            _add_bootstrapped(result, name, pair, replicates[name], test, p_value, n_clusters)
        else:
            _add_sequential(result, name, pair, replicates[name], cluster, n_clusters, boundary)
    return result


def _add_auc(
    result: QualityComparison,
    pairs: LabeledPairs,
    cluster: IntArray,
    n_clusters: int,
    boundary: Boundary,
) -> QualityComparison:
    delong = paired_delong(pairs.champion, pairs.challenger, pairs.labels, cluster, n_clusters)
    unit = (0.0, 1.0)
    se_difference = float(np.sqrt(delong.var_difference))
    if boundary.mode == "fixed":
        champion_ci = normal_interval(delong.auc_champion, delong.var_champion, unit)
        challenger_ci = normal_interval(delong.auc_challenger, delong.var_challenger, unit)
        difference = Difference(
            estimate=delong.difference,
            ci=normal_interval(delong.difference, delong.var_difference),
            p_value=normal_p_value(delong.difference, delong.var_difference),
            test="DeLong z-test, clustered by request",
            ci_method="DeLong",
            se=se_difference,
        )
    else:
        champion_ci, challenger_ci = (
            boundary.interval(value, float(np.sqrt(variance)), n_clusters, unit)
            for value, variance in (
                (delong.auc_champion, delong.var_champion),
                (delong.auc_challenger, delong.var_challenger),
            )
        )
        inference = auc_difference(delong.difference, delong.var_difference, n_clusters, boundary)
        difference = Difference(
            *inference,
            test="DeLong, always-valid p-value, clustered by request",
            ci_method=_SEQUENTIAL_CI + " on DeLong's standard error",
            se=se_difference,
        )
    result.champion["auc"] = Estimate(delong.auc_champion, champion_ci)
    result.challenger["auc"] = Estimate(delong.auc_challenger, challenger_ci)
    result.differences["auc"] = difference
    spread = np.sqrt(delong.var_champion * delong.var_challenger)
    correlation = (
        (delong.var_champion + delong.var_challenger - delong.var_difference) / (2 * spread)
        if spread > 0
        else float("nan")
    )
    return QualityComparison(
        result.champion, result.challenger, result.differences, n_clusters, float(correlation)
    )


_SEQUENTIAL_CI = "confidence sequence (Waudby-Smith et al. 2021)"
# Metrics that are means of per-row values: their difference is the mean of the per-row
# differences, whose boundary is the one the simulations check.
_MEANS = frozenset({"accuracy", "log_loss", "brier", "mae"})


def _add_sequential(
    result: QualityComparison,
    name: str,
    parts: tuple[RatioParts, RatioParts],
    replicates: PairedReplicates,
    cluster: IntArray,
    n_clusters: int,
    boundary: Boundary,
) -> None:
    champion, challenger = (
        ratio_value(float(p.numerator.sum()), float(p.denominator.sum()), p.root) for p in parts
    )
    for side, value, draws in (
        (result.champion, champion, replicates.champion),
        (result.challenger, challenger, replicates.challenger),
    ):
        side[name] = Estimate(value, boundary.interval(value, _spread(draws), n_clusters))
    per_row = parts[1].numerator - parts[0].numerator  # the losses, or correct answers
    if name in _MEANS:
        inference = mean_difference(per_row, cluster, n_clusters, boundary)
        se = float((inference.ci[1] - inference.estimate) / boundary.multiplier(n_clusters))
        result.differences[name] = Difference(
            *inference, test=_SEQUENTIAL_TESTS[name], ci_method=_SEQUENTIAL_CI, se=se
        )
        return
    estimate = challenger - champion
    se = _spread(replicates.difference)
    p_value = boundary.p_value(estimate, se, n_clusters)
    if name == "rmse":  # the sign of an RMSE difference is that of the MSE difference
        p_value = mean_difference(per_row, cluster, n_clusters, boundary).p_value
    result.differences[name] = Difference(
        estimate=estimate,
        ci=boundary.interval(estimate, se, n_clusters),
        p_value=p_value,
        test=_SEQUENTIAL_TESTS[name],
        ci_method=_SEQUENTIAL_CI + " on the bootstrap's standard error",
        se=se,
    )


def _spread(draws: FloatArray) -> float:
    finite = draws[np.isfinite(draws)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


_SEQUENTIAL_TESTS = {
    "accuracy": "always-valid, on per-row correct answers, clustered by request",
    "log_loss": "always-valid, on per-row log loss, clustered by request",
    "brier": "always-valid, on per-row Brier scores, clustered by request",
    "mae": "always-valid, on absolute errors, clustered by request",
    "rmse": "always-valid, on squared errors, clustered by request",
    "precision": "always-valid, on the bootstrap's standard error",
    "recall": "always-valid, on the bootstrap's standard error",
}


def _paired_test(
    name: str,
    parts: tuple[RatioParts, RatioParts],
    replicates: PairedReplicates,
    cluster: IntArray,
    n_clusters: int,
) -> tuple[str, float]:
    """The paired test for a bootstrapped metric (see the module table)."""
    test = _TESTS.get(name, "paired bootstrap")
    if n_clusters < 2:
        return test, float("nan")
    if name == "accuracy":
        return test, mcnemar_p_value(parts[0].numerator > 0, parts[1].numerator > 0)
    if name in _TESTS:
        loss_difference = parts[1].numerator - parts[0].numerator
        return test, clustered_paired_t(loss_difference, cluster, n_clusters)[1]
    return test, bootstrap_p_value(replicates.difference)


_TESTS = {
    "accuracy": "McNemar exact",
    "log_loss": "paired t on per-row log loss, clustered by request",
    "brier": "paired t on per-row Brier scores, clustered by request",
    "rmse": "paired t on squared errors, clustered by request",
    "mae": "paired t on absolute errors, clustered by request",
}


def _add_bootstrapped(
    result: QualityComparison,
    name: str,
    parts: tuple[RatioParts, RatioParts],
    replicates: PairedReplicates,
    test: str,
    p_value: float,
    n_clusters: int,
) -> None:
    champion, challenger = (
        ratio_value(float(p.numerator.sum()), float(p.denominator.sum()), p.root) for p in parts
    )

    def interval(values: FloatArray) -> tuple[float, float]:
        # One request cannot show how much requests vary.
        return percentile_interval(values) if n_clusters >= 2 else _NAN_PAIR

    result.champion[name] = Estimate(champion, interval(replicates.champion))
    result.challenger[name] = Estimate(challenger, interval(replicates.challenger))
    result.differences[name] = Difference(
        estimate=challenger - champion,
        ci=interval(replicates.difference),
        p_value=p_value,
        test=test,
        ci_method=BOOTSTRAP_CI,
    )
