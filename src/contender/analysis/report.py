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

import numpy as np

from contender.analysis import curves
from contender.analysis.coverage import Coverage, coverage
from contender.analysis.data import LoggedRows
from contender.analysis.intervals import N_REPLICATES
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
from contender.analysis.quality import LabeledPairs, QualityComparison, compare_quality
from contender.analysis.task import Task, check_binary_labels, detect_task, primary_metric
from contender.analysis.verdict import Evidence, Verdict, decide


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


def compute_report(rows: LoggedRows, options: ReportOptions) -> Report:
    """The full comparison; raises ConfigError for labels or a metric that do not fit."""
    task = detect_task(rows)
    if task is Task.CLASSIFIER:
        check_binary_labels(rows.labels)
    metric = primary_metric(task, options.metric)
    pairs, n_paired = labeled_pairs(rows)
    rng = np.random.default_rng(options.seed)
    quality = (
        compare_quality(pairs, task, options.threshold, rng, options.n_replicates)
        if len(pairs)
        else None
    )
    checks = guardrails(rows, options.max_latency_ratio)
    if options.replay is not None:
        # Offline batch time against serving latency says nothing about serving V.
        checks = replace(checks, latency_p99_ratio=float("nan"))
    covered = coverage(rows)
    evidence = Evidence(
        primary_metric=metric,
        difference=quality.differences.get(metric) if quality else None,
        n_paired=n_paired,
        n_labeled=len(pairs),
        min_labeled=options.min_labeled,
        guardrails=checks,
        coverage=covered,
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
