"""Quality metrics of both models on the same labeled rows, with intervals and tests.

Per metric and model: a point value and a 95 % interval; per metric: the difference
(challenger minus champion) with its interval and a p-value.

| metric | intervals | p-value of the difference |
|---|---|---|
| auc | DeLong, clustered by request | DeLong z-test |
| accuracy | bootstrap over requests | McNemar exact |
| precision, recall | bootstrap over requests | paired bootstrap |
| log_loss, rmse, mae | bootstrap over requests | request-clustered paired t on per-row losses |
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
from contender.analysis.task import Task, metrics_for

BOOTSTRAP_CI = "bootstrap percentile over requests"
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


@dataclass(frozen=True)
class QualityComparison:
    champion: dict[str, Estimate]
    challenger: dict[str, Estimate]
    differences: dict[str, Difference]


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
    result = QualityComparison({}, {}, {})
    if "auc" in names:
        _add_auc(result, pairs, cluster, n_clusters)
    for name, pair in parts.items():
        test, p_value = _paired_test(name, pair, replicates[name], cluster, n_clusters)
        _add_bootstrapped(result, name, pair, replicates[name], test, p_value, n_clusters)
    return result


def _add_auc(
    result: QualityComparison, pairs: LabeledPairs, cluster: IntArray, n_clusters: int
) -> None:
    delong = paired_delong(pairs.champion, pairs.challenger, pairs.labels, cluster, n_clusters)
    unit = (0.0, 1.0)
    result.champion["auc"] = Estimate(
        delong.auc_champion, normal_interval(delong.auc_champion, delong.var_champion, unit)
    )
    result.challenger["auc"] = Estimate(
        delong.auc_challenger,
        normal_interval(delong.auc_challenger, delong.var_challenger, unit),
    )
    result.differences["auc"] = Difference(
        estimate=delong.difference,
        ci=normal_interval(delong.difference, delong.var_difference),
        p_value=normal_p_value(delong.difference, delong.var_difference),
        test="DeLong z-test, clustered by request",
        ci_method="DeLong",
    )


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
