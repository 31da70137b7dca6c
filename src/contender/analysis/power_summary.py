"""The report's `power`: what the labeled rows so far can see, and how many more it takes.

For the primary metric's difference, on the same boundary as its interval:

- `minimum_detectable`: the smallest true difference the labeled requests so far detect
  with 80 % power (`power.minimum_detectable` on the difference's standard error);
- `rows_needed` for `target_effect` (`--target-effect`; by default 0.01 for AUC,
  accuracy, precision and recall, none for losses, whose scale depends on the data):
  for AUC the paired Hanley-McNeil formula at the observed champion AUC, share of
  positives and correlation of the two AUC estimates; otherwise the difference's
  per-request standard deviation (its standard error times the square root of the
  requests) scaled to the rows needed. `rows_still_needed` subtracts the labeled rows.
  Rows per request are taken as observed (requests are the independent units).

Say so plainly: an always-valid boundary costs roughly twice the rows of a fixed test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contender.analysis.power import auc_rows_needed, minimum_detectable, rows_needed
from contender.analysis.quality import LabeledPairs, QualityComparison
from contender.analysis.sequential import Boundary

POWER = 0.8
DEFAULT_TARGETS = {"auc": 0.01, "accuracy": 0.01, "precision": 0.01, "recall": 0.01}
# Beyond this many rows "rows needed" is said as "more than".
MAX_ROWS = 10**8


@dataclass(frozen=True)
class PowerSummary:
    metric: str
    power: float
    minimum_detectable: float
    target_effect: float | None
    rows_needed: int | None
    """Total labeled rows for the target; None without a target or a standard error."""
    rows_still_needed: int | None


def power_summary(
    metric: str,
    quality: QualityComparison | None,
    pairs: LabeledPairs,
    boundary: Boundary,
    target_effect: float | None,
) -> PowerSummary:
    target = target_effect if target_effect is not None else DEFAULT_TARGETS.get(metric)
    difference = quality.differences.get(metric) if quality is not None else None
    if quality is None or difference is None or not math.isfinite(difference.se):
        return PowerSummary(metric, POWER, float("nan"), target, None, None)
    detectable = minimum_detectable(difference.se, quality.n_requests, boundary, POWER)
    needed = _rows_needed(metric, quality, pairs, boundary, target) if target else None
    still = None if needed is None else max(0, needed - len(pairs))
    return PowerSummary(metric, POWER, detectable, target, needed, still)


def _rows_needed(
    metric: str,
    quality: QualityComparison,
    pairs: LabeledPairs,
    boundary: Boundary,
    target: float,
) -> int | None:
    rows_per_request = len(pairs) / quality.n_requests
    if metric == "auc":
        prevalence = float(np.mean(pairs.labels == 1))
        champion = quality.champion["auc"].value
        correlation = quality.auc_correlation
        if not (0 < prevalence < 1 and math.isfinite(champion) and math.isfinite(correlation)):
            return None
        # Hanley-McNeil needs an AUC below 1: a champion at the ceiling cannot be beaten.
        if champion + target >= 1:
            return None
        return auc_rows_needed(
            champion, champion + target, prevalence, correlation, boundary, POWER, MAX_ROWS
        )
    difference = quality.differences[metric]
    per_request_sd = difference.se * math.sqrt(quality.n_requests)
    requests = rows_needed(per_request_sd, target, boundary, POWER, MAX_ROWS)
    return math.ceil(requests * rows_per_request)
