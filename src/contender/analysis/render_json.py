"""The `report --json` object of SPEC section 5, plus a few extra fields.

SPEC keys: `model`, `n_requests`, `n_rows`, `n_labeled`, `served_share`, `agreement`,
`champion` / `challenger` (`version`, `n`, `error_rate`, `latency_ms` {p50, p95, p99}
and, with labels, each metric with `<metric>_ci`), `difference`, `verdict`, `coverage`.
Extras: `task`, `threshold`, `primary_metric`, `n_paired`, `n_requests_other_versions`,
per arm `n_rows_scored`, `fallback_count`, `log_loss`; per difference `test` and
`ci_method`; `difference.error_rate` (on the requests both ran); `inference`, `alpha`,
`tuning_rows` (the boundary every interval follows); `power` (`minimum_detectable`,
`target_effect`, `rows_needed`, `rows_still_needed` at 80 % power); `latency_ratio`
(`ratio`, `ci`, `status`: the latency guardrail on its interval; null on a replay);
`label_quality`; `guardrails`, `verdict_reason`, `seed`; `replay` (null, or with `--replay V`
`{"version", "champion_version", "latency"}`: the challenger's place holds V replayed
offline, and its latency is offline batch time). NaN (undefined) is written `null`.

Meanings: `n_labeled` counts labeled rows both models scored (the rows of every quality
metric and of the `--min-labeled` rule); an arm's `n` counts the requests it ran on (not
the ones it was skipped on), the denominator of its `error_rate`; `agreement` is over all
rows both scored. `coverage` counts requests: `both_scored` of `n_requests` (`share`), the
others by their first reason in `not_scored` (`overload`, `breaker_open`, `error`,
`not_invoked`), and each arm's skips in `skipped_by_arm`.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from contender.analysis.coverage import Coverage
from contender.analysis.operations import ArmOperations
from contender.analysis.quality import Difference, Estimate
from contender.analysis.report import Report

REPLAY_LATENCY = (
    "offline batch: each request's share of its batch's predict time, not serving "
    "latency; the latency guardrail is not judged on a replay"
)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _pair(values: tuple[float, float]) -> list[float | None]:
    return [_number(values[0]), _number(values[1])]


def _arm(operations: ArmOperations, metrics: dict[str, Estimate]) -> dict[str, Any]:
    latency = operations.latency_ms
    arm: dict[str, Any] = {
        "version": operations.version,
        "n": operations.n,
        "n_rows_scored": operations.n_rows_scored,
        "error_rate": _number(operations.error_rate),
        "fallback_count": operations.fallback_count,
        "latency_ms": {
            "p50": _number(latency.p50),
            "p95": _number(latency.p95),
            "p99": _number(latency.p99),
        },
    }
    for name, estimate in metrics.items():
        arm[name] = _number(estimate.value)
        arm[f"{name}_ci"] = _pair(estimate.ci)
    return arm


def coverage_to_dict(coverage: Coverage) -> dict[str, Any]:
    return {
        "n_requests": coverage.n_requests,
        "both_scored": coverage.both_scored,
        "share": _number(coverage.share),
        "not_scored": dict(coverage.not_scored),
        "skipped_by_arm": {arm: dict(counts) for arm, counts in coverage.skipped_by_arm.items()},
    }


def _difference(difference: Difference) -> dict[str, Any]:
    return {
        "estimate": _number(difference.estimate),
        "ci": _pair(difference.ci),
        "p_value": _number(difference.p_value),
        "test": difference.test,
        "ci_method": difference.ci_method,
    }


def _power(report: Report) -> dict[str, Any]:
    power = report.power
    return {
        "metric": power.metric,
        "power": power.power,
        "minimum_detectable": _number(power.minimum_detectable),
        "target_effect": power.target_effect,
        "rows_needed": power.rows_needed,
        "rows_still_needed": power.rows_still_needed,
    }


def _latency_ratio(report: Report) -> dict[str, Any] | None:
    latency = report.guardrails.latency
    if latency is None:
        return None
    return {
        "ratio": _number(latency.ratio),
        "ci": _pair(latency.ci),
        "status": latency.status,
        "n_champion": latency.n_champion,
        "n_challenger": latency.n_challenger,
        "max_ratio": report.guardrails.max_latency_ratio,
    }


def _label_quality(report: Report) -> dict[str, Any]:
    quality = report.label_quality
    srm = quality.srm
    return {
        "labeled_share": _number(quality.labeled_share),
        "labeled_share_by_arm": {
            arm: _number(share) for arm, share in quality.labeled_share_by_arm.items()
        },
        "label_delay_s": {name: _number(value) for name, value in quality.label_delay_s.items()},
        "orphan_feedback": quality.orphan_feedback,
        "srm_p": None if srm is None else _number(srm.p_value),
        "srm": None
        if srm is None
        else {
            "n": srm.n,
            "expected_share": _number(srm.expected_share),
            "observed_share": _number(srm.observed_share),
        },
        "gates_failed": list(quality.failures),
    }


def report_to_dict(report: Report) -> dict[str, Any]:
    quality = report.quality
    guardrails = report.guardrails
    return {
        "model": report.model,
        "task": str(report.task),
        "threshold": report.threshold,
        "primary_metric": report.primary_metric,
        "n_requests": report.n_requests,
        "n_rows": report.n_rows,
        "n_paired": report.n_paired,
        "n_labeled": report.n_labeled,
        "n_requests_other_versions": report.n_requests_other_versions,
        "served_share": {
            "champion": _number(report.served_share.champion),
            "challenger": _number(report.served_share.challenger),
        },
        "agreement": _number(report.agreement),
        "coverage": coverage_to_dict(report.coverage),
        "champion": _arm(report.champion, quality.champion if quality else {}),
        "challenger": _arm(report.challenger, quality.challenger if quality else {}),
        "inference": report.boundary.mode,
        "alpha": report.boundary.alpha,
        "tuning_rows": report.boundary.tuning_rows,
        "difference": {
            name: _difference(difference)
            for name, difference in (
                *(quality.differences.items() if quality else []),
                *(
                    [("error_rate", report.error_rate_difference)]
                    if report.error_rate_difference is not None
                    else []
                ),
            )
        },
        "power": _power(report),
        "weighted": None
        if report.weighted is None
        else {
            name: {
                "champion": _number(metric.champion),
                "challenger": _number(metric.challenger),
                "difference": _number(metric.difference),
                "difference_ci": _pair(metric.difference_ci),
                "n_labeled": metric.n_labeled,
                "not_identifiable": metric.reason,
            }
            for name, metric in report.weighted.items()
        },
        "latency_ratio": _latency_ratio(report),
        "label_quality": _label_quality(report),
        "guardrails": {
            "n_paired_requests": guardrails.n_paired_requests,
            "latency_p99_ratio": _number(guardrails.latency_p99_ratio),
            "max_latency_ratio": guardrails.max_latency_ratio,
            "latency_ok": guardrails.latency_ok,
            "error_rate_p_value": _number(guardrails.error_rate_p_value),
            "errors_ok": guardrails.errors_ok,
        },
        "verdict": report.verdict.decision.value,
        "verdict_reason": report.verdict.reason,
        "seed": report.seed,
        "replay": None
        if report.replay is None
        else {
            "version": report.replay,
            "champion_version": report.champion.version,
            "latency": REPLAY_LATENCY,
        },
    }


def report_to_json(report: Report) -> str:
    return orjson.dumps(report_to_dict(report), option=orjson.OPT_INDENT_2).decode()
