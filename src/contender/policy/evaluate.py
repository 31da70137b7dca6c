"""Apply a `Policy` to one `report --json` object: promote, rollback or hold, and why.

Where each policy metric is read in the report is `REPORT_FIELDS`, the one table of it.
Conditions are checked on the interval `[lo, hi]` found there, as the report gives it
(challenger minus champion; the latency ratio challenger / champion): nothing is flipped
for metrics where lower is better, so a loss policy writes `promote_when: "ci.upper < 0"`.

The rules, in order:
- primary conditions are only judged once `n_labeled >= inference.burn_in_rows`
  (before that they are unknown);
- *failure*: `primary.rollback_when` holds, or any guardrail's `fail_when` holds. The
  outcome is `rollback` with `on_fail: rollback`, else `hold` (with the failure said);
- *promote*: `primary.promote_when` holds, every guardrail's `fail_when` is known not to
  hold, and every label-quality gate set by the policy is known to pass;
- otherwise `hold` (undecided).

A field missing from the report (no `latency_ratio` on too few rows, a report without
`label_quality`, a null bound) makes its condition *unknown*: it can never promote, and it
never causes a rollback either (only conditions known to hold do). Nothing here raises on
a report that lacks fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from contender.policy.parse import PRIMARY_METRICS, Condition, Policy

if TYPE_CHECKING:
    from contender.analysis.report import ReportOptions

REPORT_FIELDS: dict[str, tuple[str, ...]] = {
    "p99_latency_ratio": ("latency_ratio", "ci"),
    "error_rate_diff": ("difference", "error_rate", "ci"),
    **{metric: ("difference", metric, "ci") for metric in PRIMARY_METRICS},
}
"""Policy metric -> path of its interval `[lo, hi]` in the `report --json` object."""

LABEL_FIELDS = {
    "labeled_share": ("label_quality", "labeled_share"),
    "labeled_share_by_arm": ("label_quality", "labeled_share_by_arm"),
    "srm_p": ("label_quality", "srm_p"),
    "n_labeled": ("n_labeled",),
}
"""Where the label-quality gates and the burn-in read the report."""


class Outcome(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HOLD = "hold"


@dataclass(frozen=True)
class Check:
    """One condition or gate, with the value it was judged on."""

    name: str
    """e.g. "primary auc promote_when", "guardrails[0] p99_latency_ratio fail_when"."""
    rule: str
    """e.g. "ci.lower > 0", "labeled_share >= 0.5"."""
    value: str
    """What the report gave, e.g. "[0.0213, 0.0488]", or "missing (latency_ratio.ci)"."""
    result: bool | None
    """True: holds, False: does not, None: unknown (field missing)."""

    def __str__(self) -> str:
        verdict = {True: "holds", False: "does not hold", None: "unknown"}[self.result]
        return f"{self.name} {self.rule} on {self.value}: {verdict}"


@dataclass(frozen=True)
class Evaluation:
    outcome: Outcome
    reason: str
    """One line: the outcome's cause, then every check and its value."""
    failed: bool
    """A rollback condition held (the outcome is `hold` when `on_fail: hold`)."""
    checks: tuple[Check, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "failed": self.failed,
            "checks": [
                {"name": c.name, "rule": c.rule, "value": c.value, "result": c.result}
                for c in self.checks
            ],
        }


def lookup(report: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at `path`, None when any step is missing or not a mapping."""
    value: Any = report
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def interval_of(report: Mapping[str, Any], metric: str) -> tuple[float | None, float | None] | None:
    """The `[lo, hi]` of a policy metric; None when the report has no such field."""
    value = lookup(report, REPORT_FIELDS[metric])
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return None
    return (_finite(value[0]), _finite(value[1]))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:.4g}"


def _show_interval(ci: tuple[float | None, float | None] | None, metric: str) -> str:
    if ci is None:
        return f"missing ({'.'.join(REPORT_FIELDS[metric])})"
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _condition_check(
    name: str, condition: Condition, metric: str, report: Mapping[str, Any]
) -> Check:
    ci = interval_of(report, metric)
    return Check(name, str(condition), _show_interval(ci, metric), condition.holds(ci))


def _label_checks(policy: Policy, report: Mapping[str, Any]) -> list[Check]:
    gates = policy.label_quality
    checks = []
    if gates.min_coverage is not None:
        share = _finite(lookup(report, LABEL_FIELDS["labeled_share"]))
        checks.append(
            Check(
                "label_quality min_coverage",
                f"labeled_share >= {gates.min_coverage:g}",
                _fmt(share) if share is not None else "missing (label_quality.labeled_share)",
                None if share is None else share >= gates.min_coverage,
            )
        )
    if gates.max_arm_coverage_gap is not None:
        by_arm = lookup(report, LABEL_FIELDS["labeled_share_by_arm"])
        a = _finite(lookup(by_arm, ("champion",))) if isinstance(by_arm, Mapping) else None
        b = _finite(lookup(by_arm, ("challenger",))) if isinstance(by_arm, Mapping) else None
        gap = None if a is None or b is None else abs(a - b)
        checks.append(
            Check(
                "label_quality max_arm_coverage_gap",
                f"|labeled_share champion - challenger| <= {gates.max_arm_coverage_gap:g}",
                _fmt(gap) if gap is not None
                else "missing (label_quality.labeled_share_by_arm)",
                None if gap is None else gap <= gates.max_arm_coverage_gap + 1e-12,
            )
        )  # fmt: skip
    if gates.srm_alpha is not None:
        srm_p = _finite(lookup(report, LABEL_FIELDS["srm_p"]))
        checks.append(
            Check(
                "label_quality srm_alpha",
                f"srm_p >= {gates.srm_alpha:g}",
                _fmt(srm_p) if srm_p is not None else "missing (label_quality.srm_p)",
                None if srm_p is None else srm_p >= gates.srm_alpha,
            )
        )
    return checks


def evaluate(policy: Policy, report: Mapping[str, Any]) -> Evaluation:
    """The policy's outcome on one report object (`report_to_dict`); never raises on a
    report that lacks fields: those conditions are unknown."""
    primary = policy.primary
    burn_in = policy.inference.burn_in_rows
    n_labeled = lookup(report, LABEL_FIELDS["n_labeled"])
    n_known = isinstance(n_labeled, int) and not isinstance(n_labeled, bool)
    burned_in = n_known and n_labeled >= burn_in
    burn_check = Check(
        "burn-in", f"n_labeled >= {burn_in}", str(n_labeled) if n_known else "missing (n_labeled)",
        burned_in if n_known else None,
    )  # fmt: skip

    def primary_check(kind: str, condition: Condition) -> Check:
        check = _condition_check(f"primary {primary.metric} {kind}", condition, primary.metric,
                                 report)  # fmt: skip
        if burned_in:
            return check
        return Check(check.name, check.rule, f"{check.value} before burn-in", None)

    promote_check = primary_check("promote_when", primary.promote_when)
    rollback_check = (
        primary_check("rollback_when", primary.rollback_when)
        if primary.rollback_when is not None
        else None
    )
    guard_checks = [
        _condition_check(f"guardrails[{i}] {g.metric} fail_when", g.fail_when, g.metric, report)
        for i, g in enumerate(policy.guardrails)
    ]
    label_checks = _label_checks(policy, report)
    checks = (
        burn_check,
        promote_check,
        *([rollback_check] if rollback_check is not None else []),
        *guard_checks,
        *label_checks,
    )
    detail = "; ".join(str(check) for check in checks)

    failures = [c for c in (rollback_check, *guard_checks) if c is not None and c.result is True]
    if failures:
        said = ", ".join(f"{c.name} {c.rule}" for c in failures)
        if policy.evaluation.on_fail == "rollback":
            return Evaluation(Outcome.ROLLBACK, f"rollback: {said} holds; {detail}", True, checks)
        return Evaluation(
            Outcome.HOLD, f"hold (on_fail: hold): {said} holds; {detail}", True, checks
        )

    blockers: list[str] = []
    if not burned_in:
        blockers.append(f"burn-in not reached ({burn_check.value} of {burn_in} labeled rows)")
    elif promote_check.result is not True:
        blockers.append(
            f"{promote_check.name} {promote_check.rule} "
            + ("is unknown" if promote_check.result is None else "does not hold")
        )
    blockers += [f"{c.name} is unknown" for c in guard_checks if c.result is None]
    blockers += [
        f"{c.name} {'is unknown' if c.result is None else 'fails'}"
        for c in label_checks
        if c.result is not True
    ]
    if not blockers:
        return Evaluation(Outcome.PROMOTE, f"promote: every condition passes; {detail}", False,
                          checks)  # fmt: skip
    return Evaluation(Outcome.HOLD, f"hold: {', '.join(blockers)}; {detail}", False, checks)


POLICY_OPTIONS = (
    "metric",
    "min_labeled",
    "inference",
    "alpha",
    "tuning_rows",
    "srm_alpha",
    "max_arm_label_gap",
    "min_labeled_share",
)
"""The `ReportOptions` a policy sets: they win over flags (`report --policy`, `compare`)."""


def report_options_for(policy: Policy) -> ReportOptions:
    """The `ReportOptions` a report judged by `policy` is computed with: its metric,
    `alpha`, inference mode, tuning and burn-in rows, and the label-quality gates it
    sets (the report's own defaults for the others)."""
    from contender.analysis.report import ReportOptions

    gates = policy.label_quality
    defaults = ReportOptions()
    return ReportOptions(
        metric=policy.primary.metric,
        min_labeled=policy.inference.burn_in_rows,
        inference=policy.inference.mode,
        alpha=policy.alpha,
        tuning_rows=policy.inference.tuning_rows,
        srm_alpha=gates.srm_alpha if gates.srm_alpha is not None else defaults.srm_alpha,
        max_arm_label_gap=(
            gates.max_arm_coverage_gap
            if gates.max_arm_coverage_gap is not None
            else defaults.max_arm_label_gap
        ),
        min_labeled_share=gates.min_coverage or 0.0,
    )


def report_for_policy(
    log_store_url: str,
    model: str,
    policy: Policy,
    labels_csv: Any = None,
    since: Any = None,
) -> dict[str, Any]:
    """The `report --json` object `evaluate` reads, computed with `report_options_for`.
    Raises ConfigError when the log cannot be read (as `build_report`)."""
    from contender.analysis.render_json import report_to_dict
    from contender.analysis.report import build_report

    report = build_report(log_store_url, model, labels_csv, since, report_options_for(policy))
    return report_to_dict(report)
