"""One-line summaries the terminal and HTML reports share: inference, power, latency,
labels. Plain text; each renderer styles it."""

from __future__ import annotations

import math

from contender.analysis import formatting as fmt
from contender.analysis.report import Report


def inference_line(report: Report) -> str:
    boundary = report.boundary
    if boundary.mode == "sequential":
        return (
            f"sequential: always-valid {1 - boundary.alpha:.0%} intervals, safe to read "
            f"every day (tightest at {boundary.tuning_rows:,} labeled requests)"
        )
    return f"fixed: {1 - boundary.alpha:.0%} intervals for one pre-planned look"


def power_line(report: Report) -> str:
    power = report.power
    if math.isnan(power.minimum_detectable):
        return "no labeled rows to judge power on yet"
    now = (
        f"the {report.n_labeled:,} labeled rows detect a difference in {power.metric} of "
        f"{power.minimum_detectable:.2g} ({power.power:.0%} power)"
    )
    if power.target_effect is None:
        return f"{now}; pass --target-effect for the rows a difference needs"
    if power.rows_needed is None:
        return f"{now}; rows for {power.target_effect:+g} cannot be estimated here"
    more = power.rows_still_needed or 0
    needed = f"{power.target_effect:+g} needs about {power.rows_needed:,} labeled rows"
    return f"{now}; {needed} ({more:,} more)" if more else f"{now}; {needed} (reached)"


def latency_line(report: Report) -> str:
    latency = report.guardrails.latency
    if latency is None:
        return "not judged (offline replay)" if report.replay else "not judged"
    if math.isnan(latency.ratio):
        return "no latencies logged"
    lo, hi = latency.ci
    interval = "" if math.isnan(lo) else f" (95% CI {lo:.2f}x to {hi:.2f}x)"
    n = min(latency.n_champion, latency.n_challenger)
    return (
        f"challenger p99 / champion p99 = {latency.ratio:.2f}x{interval}, limit "
        f"{report.guardrails.max_latency_ratio:g}x: {latency.status} ({n:,} per arm)"
    )


def labels_line(report: Report) -> str:
    quality = report.label_quality
    by_arm = quality.labeled_share_by_arm
    parts = [
        f"{fmt.share(quality.labeled_share)} of rows labeled (champion's "
        f"{fmt.share(by_arm['champion'])}, challenger's {fmt.share(by_arm['challenger'])})"
    ]
    p50, p95 = quality.label_delay_s["p50"], quality.label_delay_s["p95"]
    if not math.isnan(p50):
        parts.append(f"delay p50 {fmt.duration(p50)}, p95 {fmt.duration(p95)}")
    if quality.orphan_feedback:
        parts.append(f"{quality.orphan_feedback:,} labels for unknown requests")
    if quality.srm is not None:
        parts.append(f"split vs weights {fmt.p_equals(quality.srm.p_value)}")
    return "; ".join(parts)


def weighted_line(report: Report) -> str | None:
    """`--labels-follow served-positive`: each weighted metric, or why it has none."""
    if report.weighted is None:
        return None
    parts = []
    for name, metric in report.weighted.items():
        if metric.reason is not None or math.isnan(metric.difference):
            parts.append(f"{name} not identifiable")
            continue
        parts.append(
            f"{name} {fmt.number(metric.champion)} vs {fmt.number(metric.challenger)} "
            f"({fmt.signed(metric.difference)} {fmt.interval(metric.difference_ci, sign=True)})"
        )
    return "inverse-propensity weighted (labels follow the served answer): " + "; ".join(parts)
