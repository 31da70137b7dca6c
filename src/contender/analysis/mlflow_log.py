"""`report --log-to-mlflow`: one MLflow run holding the report's numbers and pages.

The run goes to experiment `contender-reports` (created on first use), is named after the
model and both versions, is tagged with both versions and the verdict, and holds every
defined number as a metric (the intervals follow the report's inference mode, a param;
power, the latency ratio's interval and label quality included) plus `report.html` and
`report.json` as artifacts.

mlflow is imported inside `log_report_to_mlflow`: the import costs seconds, and nothing
else in the report needs it. Any failure of MLflow (unreachable server, bad URI) becomes
a one-line `ConfigError`.
"""

from __future__ import annotations

import math
from typing import Any

from contender.analysis.render_json import report_to_dict
from contender.analysis.report import Report
from contender.errors import ConfigError

EXPERIMENT = "contender-reports"


def report_metrics(report: Report) -> dict[str, float]:
    """Flat MLflow metric names -> values; undefined values are left out."""
    values: dict[str, float] = {
        "n_requests": report.n_requests,
        "n_rows": report.n_rows,
        "n_paired": report.n_paired,
        "n_labeled": report.n_labeled,
        "agreement": report.agreement,
        "served_share_challenger": report.served_share.challenger,
        "latency_p99_ratio": report.guardrails.latency_p99_ratio,
        "coverage_share": report.coverage.share,
    }
    for reason, n in report.coverage.not_scored.items():
        values[f"coverage_not_scored_{reason}"] = n
    latency = report.guardrails.latency
    if latency is not None:
        values["latency_p99_ratio_ci_lo"], values["latency_p99_ratio_ci_hi"] = latency.ci
    power = report.power
    values["power_minimum_detectable"] = power.minimum_detectable
    if power.rows_still_needed is not None:
        values["power_rows_still_needed"] = power.rows_still_needed
    labels = report.label_quality
    values["labeled_share"] = labels.labeled_share
    for arm_name, share in labels.labeled_share_by_arm.items():
        values[f"labeled_share_{arm_name}"] = share
    values["label_delay_p50_s"] = labels.label_delay_s["p50"]
    values["orphan_feedback"] = labels.orphan_feedback
    if labels.srm is not None:
        values["srm_p"] = labels.srm.p_value
    for arm_name, arm in (("champion", report.champion), ("challenger", report.challenger)):
        values[f"{arm_name}_error_rate"] = arm.error_rate
        values[f"{arm_name}_fallback_count"] = arm.fallback_count
        for percentile in ("p50", "p95", "p99"):
            values[f"{arm_name}_latency_{percentile}_ms"] = getattr(arm.latency_ms, percentile)
    quality = report.quality
    if quality is not None:
        for arm_name, estimates in (
            ("champion", quality.champion),
            ("challenger", quality.challenger),
        ):
            for name, estimate in estimates.items():
                values[f"{arm_name}_{name}"] = estimate.value
                values[f"{arm_name}_{name}_ci_lo"], values[f"{arm_name}_{name}_ci_hi"] = estimate.ci
        for name, difference in quality.differences.items():
            values[f"diff_{name}"] = difference.estimate
            values[f"diff_{name}_ci_lo"], values[f"diff_{name}_ci_hi"] = difference.ci
            values[f"diff_{name}_p_value"] = difference.p_value
    return {name: float(value) for name, value in values.items() if not math.isnan(value)}


def _tags(report: Report) -> dict[str, Any]:
    return {
        "contender.model": report.model,
        "contender.champion_version": report.champion.version or "",
        "contender.challenger_version": report.challenger.version or "",
        "contender.verdict": report.verdict.decision.value,
        "contender.verdict_reason": report.verdict.reason,
    }


def log_report_to_mlflow(
    report: Report, html_page: str, tracking_uri: str | None = None, experiment: str = EXPERIMENT
) -> str:
    """Log the run; returns its id. `tracking_uri` None: MLflow's own default/env."""
    import mlflow  # lazily, see the module docstring

    name = f"{report.model} v{report.champion.version} vs v{report.challenger.version}"
    try:
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=name) as run:
            mlflow.set_tags(_tags(report))
            mlflow.log_params(
                {
                    "task": str(report.task),
                    "threshold": report.threshold,
                    "primary_metric": report.primary_metric,
                    "seed": report.seed,
                    "inference": report.boundary.mode,
                    "alpha": report.boundary.alpha,
                    "tuning_rows": report.boundary.tuning_rows,
                }
            )
            mlflow.log_metrics(report_metrics(report))
            mlflow.log_text(html_page, "report.html")
            mlflow.log_dict(report_to_dict(report), "report.json")
            return str(run.info.run_id)
    except Exception as error:  # any MLflow or network failure: report it in one line
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise ConfigError(f"could not log the report to MLflow: {first_line}") from error
