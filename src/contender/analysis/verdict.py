"""The verdict: `promote`, `keep` or `inconclusive`, and the reason in words.

The rule, applied in this order:

1. No row was scored by both models -> **inconclusive**.
2. Fewer than `min_labeled` labeled rows scored by both -> **inconclusive** (too little
   evidence to judge quality).
2b. A label-quality gate fails (`label_quality.py`: a sample-ratio mismatch, labels that
   depend on who answered, too few rows labeled) -> **inconclusive**, with the reasons.
3. The primary metric (`--metric`; default AUC for classifiers, RMSE for regressors)
   cannot be computed (say, one class only among the labels) -> **inconclusive**.
4. The 95 % interval of the primary metric's difference (challenger minus champion) lies
   entirely on the worse side of 0 -> **keep**.
5. A guardrail fails -> **keep**: the challenger fails significantly more often than the
   champion (one-sided exact test, p < 0.05), or the whole interval of its p99 latency
   ratio lies above `max_latency_ratio`.
6. The interval lies entirely on the better side of 0 -> **promote**, unless the latency
   guardrail is inconclusive (too few latencies for a stable p99, or an interval across
   the limit) -> **inconclusive**.
7. Otherwise (the interval contains 0) -> **inconclusive**.

"Better" is higher for auc, precision, recall and accuracy, lower for log_loss, rmse, mae.
Identical models give a zero-width interval at 0, hence never `promote`.

A note, not a rule: when some requests were skipped (overload, the challenger's breaker)
and fewer than `COVERAGE_NOTE_BELOW` of all were scored by both, the reason ends with the
coverage and why. The decision stays: skips never depend on the input or the outputs, so
the scored rows remain a fair sample; they only grow slower than the traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from contender.analysis import formatting as fmt
from contender.analysis.coverage import Coverage
from contender.analysis.operations import GUARDRAIL_ALPHA, MIN_ROWS_FOR_P99, Guardrails
from contender.analysis.quality import Difference
from contender.analysis.task import HIGHER_IS_BETTER

COVERAGE_NOTE_BELOW = 0.9
"""A share of requests scored by both under which skips are mentioned in the reason."""


class Decision(StrEnum):
    PROMOTE = "promote"
    KEEP = "keep"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str


@dataclass(frozen=True)
class Evidence:
    """What the rule reads."""

    primary_metric: str
    difference: Difference | None
    n_paired: int
    n_labeled: int
    min_labeled: int
    guardrails: Guardrails
    coverage: Coverage | None = None
    """Only for the note on skipped requests; None: no note."""
    label_failures: tuple[str, ...] = ()
    """Label-quality gates that failed (rule 2b)."""


def _describe(metric: str, difference: Difference) -> str:
    lo, hi = difference.ci
    return (
        f"{metric} difference {fmt.signed(difference.estimate)} "
        f"(95% CI {fmt.signed(lo)} to {fmt.signed(hi)}, {fmt.p_equals(difference.p_value)})"
    )


def _guardrail_failures(guardrails: Guardrails) -> list[str]:
    failures = []
    if not guardrails.errors_ok:
        failures.append(
            f"challenger fails more often than the champion "
            f"({fmt.p_equals(guardrails.error_rate_p_value)}, limit {GUARDRAIL_ALPHA})"
        )
    if not guardrails.latency_ok:
        failures.append(f"challenger p99 latency is {_latency(guardrails)}")
    return failures


def _latency(guardrails: Guardrails) -> str:
    """`1.90x the champion's (95% CI 1.62x to 2.21x, limit 1.5x)`."""
    interval = ""
    if guardrails.latency is not None and not math.isnan(guardrails.latency.ci[0]):
        lo, hi = guardrails.latency.ci
        interval = f"95% CI {lo:.2f}x to {hi:.2f}x, "
    return (
        f"{guardrails.latency_p99_ratio:.2f}x the champion's "
        f"({interval}limit {guardrails.max_latency_ratio:g}x)"
    )


def _latency_short(guardrails: Guardrails) -> str:
    if guardrails.latency is None:
        return "not judged"
    if math.isnan(guardrails.latency.ci[1]):
        return f"{guardrails.latency_p99_ratio:.2f}"
    return f"{guardrails.latency_p99_ratio:.2f}, CI up to {guardrails.latency.ci[1]:.2f}"


def _side(metric: str, difference: Difference) -> int:
    """+1 when the interval is entirely better, -1 entirely worse, 0 when it holds 0."""
    lo, hi = difference.ci
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    if lo > 0:
        return sign
    if hi < 0:
        return -sign
    return 0


def _coverage_note(coverage: Coverage | None) -> str | None:
    if coverage is None or not coverage.n_skipped or not coverage.share < COVERAGE_NOTE_BELOW:
        return None
    return (
        f"note: only {fmt.share(coverage.share)} of {coverage.n_requests:,} requests were "
        f"scored by both models (not scored: {fmt.counts(coverage.not_scored)})"
    )


def decide(evidence: Evidence) -> Verdict:
    """Apply the rule in the module docstring, then add the coverage note if it applies."""
    verdict = _apply_rule(evidence)
    note = _coverage_note(evidence.coverage)
    return verdict if note is None else Verdict(verdict.decision, f"{verdict.reason}; {note}")


def _apply_rule(evidence: Evidence) -> Verdict:
    metric, difference = evidence.primary_metric, evidence.difference
    if evidence.n_paired == 0:
        return Verdict(
            Decision.INCONCLUSIVE,
            "no row was scored by both models (is a challenger loaded, with testing on?)",
        )
    if evidence.n_labeled < evidence.min_labeled:
        count = f"only {evidence.n_labeled}" if evidence.n_labeled else "no"
        return Verdict(
            Decision.INCONCLUSIVE,
            f"{count} labeled rows scored by both models (at least {evidence.min_labeled} "
            "needed: send ground truth to /feedback or pass --labels)",
        )
    if evidence.label_failures:
        return Verdict(Decision.INCONCLUSIVE, "; ".join(evidence.label_failures))
    if difference is None or any(math.isnan(v) for v in (difference.estimate, *difference.ci)):
        return Verdict(Decision.INCONCLUSIVE, f"{metric} cannot be computed on the labeled rows")
    described = _describe(metric, difference)
    side = _side(metric, difference)
    failures = _guardrail_failures(evidence.guardrails)
    if side < 0:
        return Verdict(Decision.KEEP, "; ".join([f"challenger is worse: {described}", *failures]))
    if failures:
        return Verdict(Decision.KEEP, "; ".join([*failures, described]))
    if side > 0 and evidence.guardrails.latency_inconclusive:
        latency = evidence.guardrails.latency
        assert latency is not None
        n = min(latency.n_champion, latency.n_challenger)
        why = (
            f"only {n:,} latencies for the smaller arm (at least {MIN_ROWS_FOR_P99:,} "
            "needed for a stable p99)"
            if n < MIN_ROWS_FOR_P99
            else f"p99 latency ratio {_latency(evidence.guardrails)} is not clear of the limit"
        )
        return Verdict(
            Decision.INCONCLUSIVE,
            f"challenger is better: {described}; but the latency guardrail is inconclusive: {why}",
        )
    if side > 0:
        return Verdict(
            Decision.PROMOTE,
            f"challenger is better: {described}; guardrails pass "
            f"(p99 latency ratio {_latency_short(evidence.guardrails)}, "
            f"error rate test {fmt.p_equals(evidence.guardrails.error_rate_p_value)})",
        )
    return Verdict(Decision.INCONCLUSIVE, f"no significant difference: {described}")
