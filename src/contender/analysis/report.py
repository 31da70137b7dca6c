"""The champion/challenger `Report`: everything `contender report` shows, computed once.

`compute_report(rows, options)` is pure: logged rows in, `Report` out, randomness only
from `options.seed`. `build_report` adds the reading (store, labels file, `--since`);
`latest_verdict` is the entry point for `contender promote`. Rendering (terminal, JSON,
HTML, MLflow) lives in the `render_*` and `mlflow_log` modules and only reads a Report.

Rows compared: those both models scored; quality metrics use the labeled ones among them.
With `replay` (`report --replay V`) the challenger's place holds version V as
`contender replay` scored the logged inputs (`analysis/load_replay.py`).
`coverage` says which share of the requests that is, and why the rest were not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np

from contender.analysis import curves
from contender.analysis.coverage import Coverage, coverage
from contender.analysis.data import LoggedRows
from contender.analysis.intervals import N_REPLICATES
from contender.analysis.label_quality import LabelGates, LabelQuality, label_quality
from contender.analysis.labels import apply_label_table, read_labels_csv
from contender.analysis.load import load_logged_rows
from contender.analysis.load_replay import load_replayed_rows
from contender.analysis.metrics import agreement
from contender.analysis.operations import (
    ArmOperations,
    Guardrails,
    ServedShare,
    arm_operations,
    guardrails,
    served_share,
)
from contender.analysis.power_summary import PowerSummary, power_summary
from contender.analysis.propensity import WeightedMetric
from contender.analysis.quality import (
    Difference,
    LabeledPairs,
    QualityComparison,
    compare_quality,
)
from contender.analysis.selective_labels import (
    LABELS_FOLLOW,
    weighted_comparison,
    weighted_primary,
)
from contender.analysis.sequential import Boundary, mean_difference
from contender.analysis.task import Task, check_binary_labels, detect_task, primary_metric
from contender.analysis.verdict import Evidence, Verdict, decide
from contender.errors import ConfigError


@dataclass(frozen=True)
class ReportOptions:
    threshold: float = 0.5
    """A classifier predicts positive when its score is at least this."""
    metric: str | None = None
    """Primary metric of the verdict; None: auc (classifier) or rmse (regressor)."""
    max_latency_ratio: float = 1.5
    """Largest allowed challenger p99 / champion p99."""
    min_labeled: int = 200
    """Fewer labeled paired rows than this: inconclusive."""
    seed: int = 0
    """Seeds the bootstrap, so the same log gives the same report."""
    n_replicates: int = N_REPLICATES
    """Bootstrap replicates."""
    replay: str | None = None
    """`--replay V`: the challenger's place holds version V replayed offline."""
    inference: str = "sequential"
    """`sequential` (always-valid intervals and p-values) or `fixed` (one look)."""
    alpha: float = 0.05
    """Two-sided error rate of every interval: over all looks, in sequential mode."""
    tuning_rows: int = 5000
    """Labeled requests at which the sequential boundary is tightest."""
    target_effect: float | None = None
    """The difference `power` counts the rows for (None: 0.01 for AUC and rates)."""
    labels_follow: str = "all"
    """`served-positive`: labels arrive only for rows the served model flagged (plus
    `audit_rate` of the rest): metrics are inverse-propensity weighted."""
    audit_rate: float = 0.0
    srm_alpha: float = 0.001
    """The sample-ratio-mismatch gate's level (always valid, so daily looks are fine)."""
    max_arm_label_gap: float = 0.1
    """Largest gap between the arms' labeled shares before the labels count as biased."""
    min_labeled_share: float = 0.0
    """Smallest labeled share of all rows (0: no such gate)."""


@dataclass(frozen=True)
class Figures:
    champion: curves.ArmCurves
    challenger: curves.ArmCurves
    latency: curves.Histogram
    errors: curves.Histogram | None
    """Regressors: prediction minus label on the labeled paired rows."""


@dataclass(frozen=True)
class Report:
    model: str
    task: Task
    threshold: float
    primary_metric: str
    n_requests: int
    n_rows: int
    n_paired: int
    """Rows both models scored."""
    n_labeled: int
    """Labeled rows both models scored: the rows of every quality metric."""
    n_requests_other_versions: int
    coverage: Coverage
    served_share: ServedShare
    agreement: float
    champion: ArmOperations
    challenger: ArmOperations
    quality: QualityComparison | None
    """None without labeled paired rows."""
    guardrails: Guardrails
    label_quality: LabelQuality
    weighted: dict[str, WeightedMetric] | None
    """`--labels-follow served-positive`: the weighted metrics, else None."""
    error_rate_difference: Difference | None
    """Challenger minus champion error rate on the requests both ran, with its interval."""
    boundary: Boundary
    power: PowerSummary
    verdict: Verdict
    figures: Figures
    seed: int
    replay: str | None = None
    """The replayed version (`--replay`): its latency is offline batch time, not serving
    latency, so the latency guardrail is not judged."""


def labeled_pairs(rows: LoggedRows) -> tuple[LabeledPairs, int]:
    """The labeled rows both scored, and the count of rows both scored."""
    paired = ~np.isnan(rows.champion.scores) & ~np.isnan(rows.challenger.scores)
    labeled = paired & ~np.isnan(rows.labels)
    pairs = LabeledPairs(
        champion=rows.champion.scores[labeled],
        challenger=rows.challenger.scores[labeled],
        labels=rows.labels[labeled],
        row_request=rows.row_request[labeled],
    )
    return pairs, int(paired.sum())


def _paired_agreement(rows: LoggedRows, task: Task, threshold: float) -> float:
    paired = ~np.isnan(rows.champion.scores) & ~np.isnan(rows.challenger.scores)
    return agreement(
        rows.champion.scores[paired],
        rows.challenger.scores[paired],
        classifier=task is Task.CLASSIFIER,
        threshold=threshold,
    )


def _arm_curves(
    scores: np.ndarray, pairs: LabeledPairs, task: Task, rng: np.random.Generator
) -> curves.ArmCurves:
    if len(pairs) == 0:
        return curves.ArmCurves(None, None, None)
    if task is Task.CLASSIFIER:
        roc, pr = curves.roc_and_pr(scores, pairs.labels)
        return curves.ArmCurves(roc, pr, None)
    return curves.ArmCurves(None, None, curves.prediction_sample(scores, pairs.labels, rng))


def _figures(rows: LoggedRows, pairs: LabeledPairs, task: Task, seed: int) -> Figures:
    # Its own generator, so the figures never shift the bootstrap's draws.
    rng = np.random.default_rng([seed, 1])
    return Figures(
        champion=_arm_curves(pairs.champion, pairs, task, rng),
        challenger=_arm_curves(pairs.challenger, pairs, task, rng),
        latency=curves.paired_histogram(
            rows.champion.latency_ms[rows.champion.invoked],
            rows.challenger.latency_ms[rows.challenger.invoked],
        ),
        errors=(
            curves.paired_histogram(
                pairs.champion - pairs.labels, pairs.challenger - pairs.labels, 0.5
            )
            if task is Task.REGRESSOR and len(pairs)
            else None
        ),
    )


def boundary_of(options: ReportOptions) -> Boundary:
    if options.inference not in ("sequential", "fixed"):
        raise ConfigError(f"--inference {options.inference!r}: use sequential or fixed")
    if not 0 < options.alpha < 1:
        raise ConfigError(f"--alpha {options.alpha}: use a level between 0 and 1")
    if options.tuning_rows < 1:
        raise ConfigError(f"--tuning-rows {options.tuning_rows}: use at least 1")
    mode: Literal["sequential", "fixed"] = (
        "sequential" if options.inference == "sequential" else "fixed"
    )
    return Boundary(mode, options.alpha, options.tuning_rows)


def _error_rate_difference(rows: LoggedRows, boundary: Boundary) -> Difference | None:
    """On the requests both arms ran: the mean of per-request failure differences."""
    paired = rows.champion.invoked & rows.challenger.invoked
    n = int(paired.sum())
    if n < 2:
        return None
    per_request = rows.challenger.failed[paired].astype(np.float64) - rows.champion.failed[
        paired
    ].astype(np.float64)
    inference = mean_difference(per_request, np.arange(n, dtype=np.int64), n, boundary)
    half = inference.ci[1] - inference.estimate
    multiplier = boundary.multiplier(n)
    return Difference(
        *inference,
        test=f"{boundary.mode} mean of per-request failure differences",
        ci_method="confidence sequence" if boundary.mode == "sequential" else "normal",
        se=half / multiplier if multiplier > 0 else float("nan"),
    )


def compute_report(rows: LoggedRows, options: ReportOptions) -> Report:
    """The full comparison; raises ConfigError for labels or a metric that do not fit."""
    task = detect_task(rows)
    if task is Task.CLASSIFIER:
        check_binary_labels(rows.labels)
    metric = primary_metric(task, options.metric)
    pairs, n_paired = labeled_pairs(rows)
    rng = np.random.default_rng(options.seed)
    boundary = boundary_of(options)
    quality = (
        compare_quality(pairs, task, options.threshold, rng, options.n_replicates, boundary)
        if len(pairs)
        else None
    )
    # Its own generator, so the latency bootstrap never shifts the quality one. A replay's
    # offline batch time against serving latency says nothing about serving V: unjudged.
    latency_rng = None if options.replay is not None else np.random.default_rng([options.seed, 2])
    checks = guardrails(rows, options.max_latency_ratio, latency_rng)
    if options.replay is not None:
        checks = replace(checks, latency_p99_ratio=float("nan"))
    if options.labels_follow not in LABELS_FOLLOW:
        raise ConfigError(
            f"--labels-follow {options.labels_follow!r}: use {' or '.join(LABELS_FOLLOW)}"
        )
    selective = options.labels_follow == "served-positive"
    labels = label_quality(
        rows,
        LabelGates(
            options.srm_alpha,
            options.max_arm_label_gap,
            options.min_labeled_share,
            check_arm_gap=not selective,
        ),
    )
    difference = quality.differences.get(metric) if quality else None
    failures = labels.failures
    weighted = None
    if selective:
        weighted = weighted_comparison(rows, options.threshold, options.audit_rate, options.seed)
        difference, unidentified = weighted_primary(metric, weighted, boundary, n_paired)
        failures = (*failures, unidentified) if unidentified else failures
    covered = coverage(rows)
    evidence = Evidence(
        primary_metric=metric,
        difference=difference,
        n_paired=n_paired,
        n_labeled=len(pairs),
        min_labeled=options.min_labeled,
        guardrails=checks,
        coverage=covered,
        label_failures=failures,
    )
    return Report(
        model=rows.model,
        task=task,
        threshold=options.threshold,
        primary_metric=metric,
        n_requests=rows.n_requests,
        n_rows=rows.n_rows,
        n_paired=n_paired,
        n_labeled=len(pairs),
        n_requests_other_versions=rows.n_requests_other_versions,
        coverage=covered,
        served_share=served_share(rows),
        agreement=_paired_agreement(rows, task, options.threshold),
        champion=arm_operations(rows.champion, fallback_count=0),
        challenger=arm_operations(rows.challenger, fallback_count=int(rows.fallback.sum())),
        quality=quality,
        guardrails=checks,
        label_quality=labels,
        weighted=weighted,
        error_rate_difference=_error_rate_difference(rows, boundary),
        boundary=boundary,
        power=power_summary(metric, quality, pairs, boundary, options.target_effect),
        verdict=decide(evidence),
        figures=_figures(rows, pairs, task, options.seed),
        seed=options.seed,
        replay=options.replay,
    )


def build_report(
    log_store_url: str,
    model: str,
    labels_csv: Path | None = None,
    since: datetime | None = None,
    options: ReportOptions | None = None,
) -> Report:
    """Read the store (and labels file), then `compute_report`. Errors: ConfigError."""
    options = options or ReportOptions()
    table = read_labels_csv(labels_csv) if labels_csv is not None else None
    if options.replay is not None:
        rows = load_replayed_rows(log_store_url, model, options.replay, since)
    else:
        rows = load_logged_rows(log_store_url, model, since)
    if table is not None:
        rows = apply_label_table(rows, table)
    return compute_report(rows, options)


def latest_verdict(
    log_store_url: str,
    model: str,
    labels_csv: Path | None = None,
    since: datetime | None = None,
) -> tuple[str, str, str | None]:
    """(verdict, reason, the challenger version it judged) with the default options, for
    `contender promote`, which must not promote a version the report never saw.

    Raises ConfigError (one-line message) when the store cannot be read, holds no record
    of the model, or a labels file is bad: `promote` should refuse and print it.
    """
    report = build_report(log_store_url, model, labels_csv, since)
    return report.verdict.decision.value, report.verdict.reason, report.challenger.version
