"""Quality metrics when labels follow the served answer: known-propensity weighting.

With `--labels-follow served-positive`, a row gets a label only when the model that
*served* it flagged it (`score >= threshold`: an analyst reviews the alert), plus an audit:
a random `audit_rate` share of the other rows is labeled too. Metrics computed on the
labeled rows alone are biased: the rows nobody flagged, where the false negatives live,
are almost never seen, so recall looks too good, and more so for the arm that served more.

The design is known, so each row's chance of being labeled is known. The request's draw
picks the challenger with its logged weight w, independently of the row, and then

    pi_i = P(labeled | scores, w)
         = w (f_ch + (1 - f_ch) a) + (1 - w) (f_cp + (1 - f_cp) a),

with f_ch, f_cp the two flags and a the audit rate. Weighting each labeled row by 1 / pi_i
is the Horvitz-Thompson estimator (Horvitz & Thompson 1952) of any total over *all* rows:
E[L_i / pi_i] = 1 given the scores. A metric is a ratio of two totals (e.g. recall =
true positives / positives) and is estimated by the ratio of their weighted totals (the
Hajek estimator: consistent, with a bias of order 1/n).

Which propensity: the marginal pi_i (over the draw) or the conditional one given the
served arm, P(labeled | served arm, scores) = f_served + (1 - f_served) a? Both give
unbiased totals, since the draw is independent of the row. `weighted_metrics` uses the
**marginal** one by default because:

- it is never noisier: for a row exactly one model flags, the variance of its term
  L/pi - 1 is (1 - w)(1 - a) / (w + (1 - w) a) with the marginal propensity against
  (1 - w)(1 - a) / a with the conditional one (when the flagging arm was not drawn, the
  row is labeled only by audit, with weight 1/a). Rows both or neither flag get the same
  weight either way. This is the balance heuristic of multiple importance sampling (Veach
  & Guibas 1995): pooling both arms' labeling rules into one inclusion probability;
- it identifies more: a row only the challenger flags has pi >= w > 0 even without an
  audit, so both arms' precision is estimable with `audit_rate = 0`, while the
  conditional weight is 1 / 0 whenever the other arm served it.

`weighting="conditional"` is kept for comparison (the tests check both are unbiased).

Identifiability: a row with pi_i = 0 is never labeled, so no weighting recovers it. With
`audit_rate = 0` the rows neither model flagged are never labeled; their positives are
false negatives of both models, so recall, accuracy (and AUC) are not identifiable, while
precision is (it only needs flagged rows). `weighted_metrics` checks this on the data (a
metric whose required rows include one with zero propensity is NaN with a reason), and
`identifiable` states it for the design.

All arrays are per row (repeat per-request values such as the weight and
`challenger_served` with `LoggedRows.row_request`). Rows either model did not score (NaN)
or whose weight is NaN are left out. Intervals, when an `rng` is passed, bootstrap rows
(all rows, labeled or not, so the labeling draw's noise is included), with the same draws
for both arms; see `intervals` for the bucketed resampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from contender.analysis.data import BoolArray, FloatArray
from contender.analysis.intervals import assign_buckets, percentile_interval, resampled_sums

METRICS = ("precision", "recall", "accuracy")
Weighting = Literal["marginal", "conditional"]
_NAN_PAIR = (float("nan"), float("nan"))


@dataclass(frozen=True)
class WeightedMetric:
    """One metric for both arms, weighted by the inverse labeling propensity."""

    champion: float
    challenger: float
    difference: float
    """Challenger minus champion."""
    difference_ci: tuple[float, float]
    """Bootstrap percentile interval (95 %) of the difference; NaN without an `rng`."""
    n_labeled: int
    reason: str | None = None
    """Why the values are NaN (not identifiable), else None."""


def unidentifiable_reason(metric: str, audit_rate: float) -> str | None:
    """Why `metric` cannot be estimated under the served-positive design, or None if it can.

    Assumes the challenger weight is strictly between 0 and 1 (both arms serve).
    """
    if metric == "precision" or audit_rate > 0:
        return None
    return (
        f"{metric} is not identifiable with audit_rate 0: rows neither model flagged are "
        "never labeled, so the false negatives among them are never seen"
    )


def identifiable(metric: str, audit_rate: float) -> bool:
    """`metric` can be estimated under the served-positive design with this audit rate."""
    return unidentifiable_reason(metric, audit_rate) is None


def marginal_propensity(
    champion_flag: BoolArray, challenger_flag: BoolArray, weights: FloatArray, audit_rate: float
) -> FloatArray:
    """P(labeled | both flags, w), over the request's draw of the serving arm."""
    challenger_rule = np.where(challenger_flag, 1.0, audit_rate)
    champion_rule = np.where(champion_flag, 1.0, audit_rate)
    return np.asarray(weights * challenger_rule + (1 - weights) * champion_rule, np.float64)


def conditional_propensity(
    champion_flag: BoolArray,
    challenger_flag: BoolArray,
    challenger_served: BoolArray,
    audit_rate: float,
) -> FloatArray:
    """P(labeled | both flags, the arm that served): 1 if it flagged the row, else `a`."""
    served_flag = np.where(challenger_served, challenger_flag, champion_flag)
    return np.where(served_flag, 1.0, audit_rate).astype(np.float64)


def _parts(
    flag: BoolArray, labels: FloatArray, weight: FloatArray
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per metric: per-row (numerator, denominator) of its weighted ratio of totals."""
    positive = labels == 1
    hit = weight * (flag & positive)
    return {
        "precision": (hit, weight * flag),
        "recall": (hit, weight * positive),
        "accuracy": (weight * (flag == positive), weight),
    }


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _total_ratio(numerator: FloatArray, denominator: FloatArray) -> float:
    total = float(denominator.sum())
    return float(numerator.sum()) / total if total > 0 else float("nan")


def weighted_metrics(
    champion_scores: FloatArray,
    challenger_scores: FloatArray,
    labels: FloatArray,
    challenger_served: BoolArray,
    weights: FloatArray,
    threshold: float,
    audit_rate: float,
    *,
    weighting: Weighting = "marginal",
    rng: np.random.Generator | None = None,
    n_replicates: int = 1000,
) -> dict[str, WeightedMetric]:
    """Precision, recall and accuracy of both arms over all rows, from selective labels.

    Arrays are per row; `labels` is NaN where unlabeled. See the module docstring for the
    design, the weighting and identifiability. Raises ValueError when a labeled row has zero
    labeling probability: the labels then do not follow the stated design.
    """
    champion_scores = np.asarray(champion_scores, dtype=np.float64)
    challenger_scores = np.asarray(challenger_scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    served = np.asarray(challenger_served, dtype=np.bool_)
    weights = np.asarray(weights, dtype=np.float64)
    used = ~(np.isnan(champion_scores) | np.isnan(challenger_scores) | np.isnan(weights))
    champion_flag = champion_scores[used] >= threshold
    challenger_flag = challenger_scores[used] >= threshold
    labels, served, weights = labels[used], served[used], weights[used]
    propensity = (
        marginal_propensity(champion_flag, challenger_flag, weights, audit_rate)
        if weighting == "marginal"
        else conditional_propensity(champion_flag, challenger_flag, served, audit_rate)
    )
    labeled = ~np.isnan(labels)
    if (labeled & (propensity <= 0)).any():
        raise ValueError("a labeled row has zero labeling probability under the stated design")
    inverse = np.zeros_like(propensity)
    np.divide(1.0, propensity, out=inverse, where=labeled)
    filled = np.where(labeled, labels, 0.0)
    arms = (_parts(champion_flag, filled, inverse), _parts(challenger_flag, filled, inverse))
    unseen = propensity <= 0
    needed = {
        "precision": (champion_flag, challenger_flag),
        "recall": (np.ones_like(unseen), np.ones_like(unseen)),
        "accuracy": (np.ones_like(unseen), np.ones_like(unseen)),
    }
    replicates = _bootstrap(arms, rng, n_replicates) if rng is not None else None
    result: dict[str, WeightedMetric] = {}
    for index, metric in enumerate(METRICS):
        n_labeled = int(labeled.sum())
        if any((unseen & rows).any() for rows in needed[metric]):
            reason = unidentifiable_reason(metric, 0.0) or (
                f"{metric} is not identifiable: some rows it needs can never be labeled"
            )
            nan = float("nan")
            result[metric] = WeightedMetric(nan, nan, nan, _NAN_PAIR, n_labeled, reason)
            continue
        champion, challenger = (_total_ratio(*arm[metric]) for arm in arms)
        ci = (
            percentile_interval(replicates[:, 1, index] - replicates[:, 0, index])
            if replicates is not None
            else _NAN_PAIR
        )
        result[metric] = WeightedMetric(champion, challenger, challenger - champion, ci, n_labeled)
    return result


def _bootstrap(
    arms: tuple[dict[str, tuple[FloatArray, FloatArray]], ...],
    rng: np.random.Generator,
    n_replicates: int,
) -> FloatArray:
    """(replicates, arm, metric) bootstrap values over rows, the same draws for both arms."""
    columns = [part for arm in arms for metric in METRICS for part in arm[metric]]
    bucket, n_buckets = assign_buckets(len(columns[0]), rng)
    sums = np.column_stack(
        [np.bincount(bucket, weights=column, minlength=n_buckets) for column in columns]
    )
    replicated = resampled_sums(sums.astype(np.float64), n_replicates, rng)
    ratios = _ratio(replicated[:, 0::2], replicated[:, 1::2])
    return ratios.reshape(n_replicates, len(arms), len(METRICS))
