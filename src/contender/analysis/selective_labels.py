"""`--labels-follow served-positive`: the report's weighted metrics and primary difference.

When labels arrive only for rows the served model flagged (plus an audit share of the
rest), the labeled rows are not a sample of the traffic; `propensity.py` weights each by
the inverse of its known chance of being labeled. Here: the per-row arrays it needs from
the log, the weighted precision / recall / accuracy of both arms, and the primary
metric's difference on the report's boundary (the bootstrap's spread of the weighted
difference as its standard error, rows as the units). AUC, log loss and Brier have no
weighted form here: with such labels the report refuses to judge them and says so.
"""

from __future__ import annotations

import math

import numpy as np

from contender.analysis.data import LoggedRows
from contender.analysis.propensity import METRICS, WeightedMetric, weighted_metrics
from contender.analysis.quality import Difference
from contender.analysis.sequential import Boundary
from contender.errors import ConfigError

LABELS_FOLLOW = ("all", "served-positive")
_Z95 = 1.959963984540054


def weighted_comparison(
    rows: LoggedRows, threshold: float, audit_rate: float, seed: int
) -> dict[str, WeightedMetric]:
    if rows.challenger_weight is None or np.isnan(rows.challenger_weight).all():
        raise ConfigError(
            "--labels-follow needs each request's challenger weight, which this log does "
            "not hold (records written before contender 0.2.0)"
        )
    if not 0 <= audit_rate <= 1:
        raise ConfigError(f"--audit-rate {audit_rate}: use a share between 0 and 1")
    row_request = rows.row_request
    return weighted_metrics(
        rows.champion.scores,
        rows.challenger.scores,
        rows.labels,
        rows.challenger_served[row_request],
        rows.challenger_weight[row_request],
        threshold,
        audit_rate,
        rng=np.random.default_rng([seed, 3]),
    )


def weighted_primary(
    metric: str, weighted: dict[str, WeightedMetric], boundary: Boundary, n_rows: int
) -> tuple[Difference | None, str | None]:
    """The primary difference from the weighted metrics, or why there is none."""
    if metric not in METRICS:
        return None, (
            f"{metric} is not identifiable from labels that follow the served answer "
            f"(weighted: {', '.join(METRICS)}): pass --metric with one of them"
        )
    found = weighted[metric]
    if found.reason is not None or math.isnan(found.difference):
        return None, found.reason or f"the weighted {metric} cannot be computed"
    lo, hi = found.difference_ci
    se = (hi - lo) / (2 * _Z95)
    return (
        Difference(
            estimate=found.difference,
            ci=boundary.interval(found.difference, se, n_rows),
            p_value=boundary.p_value(found.difference, se, n_rows),
            test="inverse-propensity weighted, bootstrap over rows",
            ci_method=f"{boundary.mode} boundary on the bootstrap's standard error",
            se=se,
        ),
        None,
    )
