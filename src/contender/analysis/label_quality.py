"""Are the labeled rows a fair sample of the traffic? The report's `label_quality`.

- `labeled_share`: labeled rows of all rows; `labeled_share_by_arm`: of the rows each arm
  *answered*. When ground truth depends on the answer a client got (only flagged
  transactions are investigated), the two shares differ, and the labeled rows favour one
  arm's view of the traffic.
- `label_delay_s` p50/p95: seconds from the request to the label's arrival at
  `/feedback` (labels loaded by `log import` or from a CSV have no arrival time).
- `orphan_feedback`: stored labels whose request id no record has (a typo in a join key,
  a request that was never logged).
- `srm_p`: the always-valid sample-ratio-mismatch test (`srm.py`) of the served split
  against each request's logged `challenger_weight`, on requests where a challenger was
  loaded and drawn for (a request whose challenger was skipped for an open breaker is
  left out: the breaker, not the draw, decided who answered).

Gates, each a reason the verdict turns `inconclusive`: a sample-ratio mismatch
(`srm_p < srm_alpha`); a gap between the arms' labeled shares over `max_arm_label_gap`
when labels are taken as they come (`labels_follow="all"`; with `served-positive` the
gap is the design, and propensity weighting accounts for it); a labeled share under
`min_labeled_share`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from contender.analysis import formatting as fmt
from contender.analysis.data import LoggedRows
from contender.analysis.srm import SrmResult, srm_test

# An arm needs this many answered rows before its labeled share is compared.
MIN_ROWS_FOR_ARM_GAP = 100


@dataclass(frozen=True)
class LabelGates:
    srm_alpha: float = 0.001
    max_arm_label_gap: float = 0.1
    min_labeled_share: float = 0.0
    check_arm_gap: bool = True


@dataclass(frozen=True)
class LabelQuality:
    labeled_share: float
    labeled_share_by_arm: dict[str, float]
    label_delay_s: dict[str, float]
    """`p50`, `p95` (NaN without arrival times)."""
    orphan_feedback: int
    srm: SrmResult | None
    """None when no request had a challenger drawn for it."""
    failures: tuple[str, ...]
    """The gates that failed, each a sentence."""


def label_quality(rows: LoggedRows, gates: LabelGates) -> LabelQuality:
    labeled = ~np.isnan(rows.labels)
    row_request = rows.row_request
    served_challenger = rows.challenger_served[row_request]
    by_arm = {
        "champion": _share(labeled[~served_challenger]),
        "challenger": _share(labeled[served_challenger]),
    }
    delays = rows.label_delay_s
    known = delays[labeled & ~np.isnan(delays)] if delays is not None else np.array([])
    p50, p95 = np.percentile(known, [50, 95]) if len(known) else (np.nan, np.nan)
    srm = _srm(rows, gates.srm_alpha)
    result = LabelQuality(
        labeled_share=_share(labeled),
        labeled_share_by_arm=by_arm,
        label_delay_s={"p50": float(p50), "p95": float(p95)},
        orphan_feedback=rows.orphan_labels,
        srm=srm,
        failures=(),
    )
    counts = {
        "champion": int((~served_challenger).sum()),
        "challenger": int(served_challenger.sum()),
    }
    return _with_failures(result, gates, counts)


def _share(flags: np.ndarray) -> float:
    return float(flags.mean()) if len(flags) else float("nan")


def _srm(rows: LoggedRows, alpha: float) -> SrmResult | None:
    weights = rows.challenger_weight
    if weights is None:
        return None
    drawn = rows.challenger.invoked | (rows.challenger.skipped == "overload")
    usable = drawn & np.isfinite(weights) & (weights > 0) & (weights < 1)
    if not usable.any():
        return None
    served = rows.challenger_served | rows.fallback  # a fallback was drawn for the challenger
    return srm_test(served[usable], weights[usable], alpha)


def _with_failures(
    quality: LabelQuality, gates: LabelGates, answered_rows: dict[str, int]
) -> LabelQuality:
    failures: list[str] = []
    srm = quality.srm
    if srm is not None and srm.p_value < gates.srm_alpha:
        failures.append(
            f"sample ratio mismatch: the challenger answered {fmt.share(srm.observed_share)} "
            f"of {srm.n:,} requests drawn for it, against {fmt.share(srm.expected_share)} "
            f"expected from the logged weights (always-valid p = {srm.p_value:.2g} < "
            f"{gates.srm_alpha:g})"
        )
    shares = quality.labeled_share_by_arm
    gap = abs(shares["champion"] - shares["challenger"])
    enough = min(answered_rows.values()) >= MIN_ROWS_FOR_ARM_GAP
    if gates.check_arm_gap and enough and gap > gates.max_arm_label_gap:
        failures.append(
            f"labels arrive for {fmt.share(shares['champion'])} of the rows the champion "
            f"answered but {fmt.share(shares['challenger'])} of the challenger's: the "
            "labeled rows depend on who answered (if labels follow the served answer, "
            "say so with --labels-follow served-positive)"
        )
    if quality.labeled_share < gates.min_labeled_share:
        failures.append(
            f"only {fmt.share(quality.labeled_share)} of the rows are labeled "
            f"(at least {fmt.share(gates.min_labeled_share)} required)"
        )
    return replace(quality, failures=tuple(failures))
