"""How each model ran: volume, errors, latency, and the two guardrails of the verdict.

- `n`: requests the model was invoked on; `error_rate`: the share of those it failed.
- `latency_ms`: percentiles of the latencies it logged on those requests.
- `fallback_count`: requests the challenger should have served but failed, so the
  champion's answer went out; counted against the challenger (the champion's is 0).
- Guardrails compare the two on the *paired requests* (both invoked), so traffic the
  challenger never saw (testing off) cannot flatter or hurt it:
  - latency: challenger p99 / champion p99 must not exceed `max_latency_ratio`, judged
    on its interval (`latency_ratio.py`: a time-block bootstrap, the same blocks of
    consecutive requests for both arms): `fail` when the whole interval is above the
    limit, `pass` when it is at or below, else, and below `MIN_ROWS_FOR_P99` latencies
    per arm, `inconclusive` (never a pass: a p99 of a few hundred requests moves by
    +-25 % from run to run). Each arm's latencies are those of the paired requests it
    *answered* when both answered at least `MIN_SERVED_FOR_LATENCY` of them. The arm
    that does not answer runs as shadow work at idle priority, whose wall time waits for
    a free core: comparing one arm's shadow latency with the other's answering latency
    would charge the challenger for the service's own load. In shadow mode (weight 0)
    the challenger answers nothing, and all paired requests are compared;
  - errors: the challenger must not fail significantly more often (one-sided exact
    test on requests where exactly one of them failed, p < 0.05 fails the guardrail).
  A ratio that cannot be computed (no latencies logged) does not fail the guardrail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contender.analysis.data import ArmLog, BoolArray, LoggedRows
from contender.analysis.latency_ratio import FAIL, INCONCLUSIVE, LatencyRatio, latency_ratio
from contender.analysis.metrics import LatencySummary, latency_summary
from contender.analysis.paired_tests import excess_failure_p_value

GUARDRAIL_ALPHA = 0.05
MIN_SERVED_FOR_LATENCY = 30
MIN_ROWS_FOR_P99 = 2000
# The bootstrap costs requests x replicates: past `_MANY_REQUESTS` it takes fewer
# replicates, and it judges at most the latest `MAX_LATENCY_REQUESTS` requests (the
# latency that matters is today's; at that size the interval is narrow already).
_MANY_REQUESTS = 100_000
MAX_LATENCY_REQUESTS = 200_000


@dataclass(frozen=True)
class ArmOperations:
    version: str | None
    n: int
    n_rows_scored: int
    error_rate: float
    fallback_count: int
    latency_ms: LatencySummary


@dataclass(frozen=True)
class ServedShare:
    champion: float
    challenger: float


@dataclass(frozen=True)
class Guardrails:
    n_paired_requests: int
    latency_p99_ratio: float
    max_latency_ratio: float
    error_rate_p_value: float
    """One-sided: small when the challenger fails more often than the champion."""
    latency: LatencyRatio | None = None
    """The ratio's interval and status; None when not judged (a replay)."""

    @property
    def latency_ok(self) -> bool:
        """The latency guardrail has not failed (it may still be inconclusive)."""
        return self.latency is None or self.latency.status != FAIL

    @property
    def latency_inconclusive(self) -> bool:
        return self.latency is not None and self.latency.status == INCONCLUSIVE

    @property
    def errors_ok(self) -> bool:
        return not self.error_rate_p_value < GUARDRAIL_ALPHA


def arm_operations(arm: ArmLog, fallback_count: int) -> ArmOperations:
    n = int(arm.invoked.sum())
    failed = int((arm.failed & arm.invoked).sum())
    return ArmOperations(
        version=arm.version,
        n=n,
        n_rows_scored=int((~np.isnan(arm.scores)).sum()),
        error_rate=failed / n if n else float("nan"),
        fallback_count=fallback_count,
        latency_ms=latency_summary(arm.latency_ms[arm.invoked]),
    )


def served_share(rows: LoggedRows) -> ServedShare:
    challenger = float(rows.challenger_served.mean()) if rows.n_requests else float("nan")
    return ServedShare(champion=1.0 - challenger, challenger=challenger)


def guardrails(
    rows: LoggedRows, max_latency_ratio: float, rng: np.random.Generator | None = None
) -> Guardrails:
    """`rng` seeds the latency bootstrap; None leaves the latency guardrail unjudged."""
    paired = rows.champion.invoked & rows.challenger.invoked
    challenger_answered = paired & rows.challenger_served & ~rows.fallback
    champion_answered = paired & ~rows.challenger_served
    both_answered = min(challenger_answered.sum(), champion_answered.sum())
    champion_on, challenger_on = (
        (champion_answered, challenger_answered)
        if both_answered >= MIN_SERVED_FOR_LATENCY
        else (paired, paired)
    )
    champion_p99 = latency_summary(rows.champion.latency_ms[champion_on]).p99
    challenger_p99 = latency_summary(rows.challenger.latency_ms[challenger_on]).p99
    ratio = challenger_p99 / champion_p99 if champion_p99 > 0 else float("nan")
    interval = None
    if rng is not None:
        interval = _latency_interval(rows, champion_on, challenger_on, max_latency_ratio, rng)
        ratio = interval.ratio
    return Guardrails(
        n_paired_requests=int(paired.sum()),
        latency_p99_ratio=ratio,
        max_latency_ratio=max_latency_ratio,
        error_rate_p_value=excess_failure_p_value(
            rows.champion.failed[paired], rows.challenger.failed[paired]
        ),
        latency=interval,
    )


def _latency_interval(
    rows: LoggedRows,
    champion_on: BoolArray,
    challenger_on: BoolArray,
    max_latency_ratio: float,
    rng: np.random.Generator,
) -> LatencyRatio:
    """The ratio's interval over the requests either arm is judged on, in time order
    (the latest `MAX_LATENCY_REQUESTS` of them)."""
    either = champion_on | challenger_on
    order = np.flatnonzero(either)
    if rows.request_time is not None:
        order = order[np.argsort(rows.request_time[order], kind="stable")]
    order = order[-MAX_LATENCY_REQUESTS:]
    champion_ms = np.where(champion_on, rows.champion.latency_ms, np.nan)[order]
    challenger_ms = np.where(challenger_on, rows.challenger.latency_ms, np.nan)[order]
    return latency_ratio(
        champion_ms,
        challenger_ms,
        rng=rng,
        n_replicates=500 if len(order) > _MANY_REQUESTS else 1000,
        min_rows=MIN_ROWS_FOR_P99,
        max_ratio=max_latency_ratio,
    )
