"""Verdicts on constructed cases, through `compute_report`, and the rule's order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contender.analysis.latency_ratio import FAIL, INCONCLUSIVE, PASS, LatencyRatio
from contender.analysis.operations import Guardrails
from contender.analysis.quality import Difference
from contender.analysis.report import ReportOptions, compute_report
from contender.analysis.verdict import Decision, Evidence, decide
from tests.unit.analysis.factories import arm_log, classifier_rows, logged_rows

OPTIONS = ReportOptions(n_replicates=400)


def test_a_clearly_better_challenger_is_promoted() -> None:
    rows = classifier_rows(3000, np.random.default_rng(30), 0.6, 1.4)
    report = compute_report(rows, OPTIONS)
    assert report.verdict.decision is Decision.PROMOTE, report.verdict.reason
    assert "challenger is better" in report.verdict.reason


def test_identical_models_are_never_promoted() -> None:
    rng = np.random.default_rng(31)
    rows = classifier_rows(3000, rng)
    same = logged_rows(rows.champion, rows.champion, rows.labels)
    report = compute_report(same, OPTIONS)
    assert report.verdict.decision is Decision.INCONCLUSIVE
    assert report.quality is not None
    assert report.quality.differences["auc"].ci == (0.0, 0.0)
    assert report.agreement == 1.0


def test_equally_good_different_models_are_not_promoted() -> None:
    rows = classifier_rows(3000, np.random.default_rng(32), 1.0, 1.0)
    report = compute_report(rows, OPTIONS)
    assert report.verdict.decision is not Decision.PROMOTE


def test_a_more_accurate_but_three_times_slower_challenger_is_kept() -> None:
    rows = classifier_rows(3000, np.random.default_rng(33), 0.6, 1.4, challenger_latency_factor=3)
    report = compute_report(rows, OPTIONS)
    assert report.verdict.decision is Decision.KEEP
    assert "p99 latency" in report.verdict.reason
    assert report.guardrails.latency_p99_ratio == pytest.approx(3.0, rel=0.15)


def test_a_better_challenger_that_fails_more_is_kept() -> None:
    rng = np.random.default_rng(34)
    rows = classifier_rows(3000, rng, 0.6, 1.4)
    failing = rng.random(3000) < 0.03
    challenger = arm_log(rows.challenger.scores, failed=failing, list_valued=True, version="2")
    report = compute_report(logged_rows(rows.champion, challenger, rows.labels), OPTIONS)
    assert report.verdict.decision is Decision.KEEP
    assert "fails more often" in report.verdict.reason


def test_a_clearly_worse_challenger_is_kept() -> None:
    rows = classifier_rows(3000, np.random.default_rng(35), 1.4, 0.6)
    report = compute_report(rows, OPTIONS)
    assert report.verdict.decision is Decision.KEEP
    assert "challenger is worse" in report.verdict.reason


def test_too_few_labels_is_inconclusive_even_for_a_better_challenger() -> None:
    rows = classifier_rows(3000, np.random.default_rng(36), 0.6, 1.4)
    labels = np.full(3000, np.nan)
    labels[:150] = rows.labels[:150]
    report = compute_report(rows.with_labels(labels), OPTIONS)
    assert report.n_labeled == 150
    assert report.verdict.decision is Decision.INCONCLUSIVE
    assert "only 150 labeled rows" in report.verdict.reason


def test_no_labels_at_all_gives_operations_only() -> None:
    rows = classifier_rows(500, np.random.default_rng(37))
    report = compute_report(rows.with_labels(np.full(500, np.nan)), OPTIONS)
    assert report.quality is None
    assert report.verdict.decision is Decision.INCONCLUSIVE


def test_a_better_regressor_by_rmse_is_promoted() -> None:
    rng = np.random.default_rng(38)
    labels = rng.normal(100, 20, 2000)
    rows = logged_rows(
        arm_log(labels + rng.normal(0, 10, 2000)),
        arm_log(labels + rng.normal(0, 6, 2000), version="2"),
        labels,
    )
    report = compute_report(rows, OPTIONS)
    assert report.primary_metric == "rmse"
    assert report.verdict.decision is Decision.PROMOTE, report.verdict.reason


def _guardrails(
    ratio: float = 1.0, p_value: float = 1.0, ci: tuple[float, float] | None = None, n: int = 5000
) -> Guardrails:
    """The latency interval `ci` (default: the ratio +-0.05) on `n` latencies per arm."""
    lo, hi = ci if ci is not None else (ratio - 0.05, ratio + 0.05)
    status = (
        INCONCLUSIVE
        if n < 2000 or math.isnan(lo)
        else FAIL
        if lo > 1.5
        else PASS
        if hi <= 1.5
        else INCONCLUSIVE
    )
    return Guardrails(100, ratio, 1.5, p_value, LatencyRatio(ratio, (lo, hi), n, n, status))


def _difference(lo: float, hi: float) -> Difference:
    return Difference((lo + hi) / 2, (lo, hi), 0.01, "t", "c")


@pytest.mark.parametrize(
    ("metric", "ci", "guardrails", "n_labeled", "expected"),
    [
        ("auc", (0.01, 0.03), _guardrails(), 500, Decision.PROMOTE),
        ("auc", (-0.01, 0.03), _guardrails(), 500, Decision.INCONCLUSIVE),
        ("auc", (-0.03, -0.01), _guardrails(), 500, Decision.KEEP),
        ("rmse", (-0.3, -0.1), _guardrails(), 500, Decision.PROMOTE),  # lower is better
        ("rmse", (0.1, 0.3), _guardrails(), 500, Decision.KEEP),
        ("auc", (0.01, 0.03), _guardrails(ratio=1.6), 500, Decision.KEEP),
        ("auc", (0.01, 0.03), _guardrails(p_value=0.01), 500, Decision.KEEP),
        # A ratio whose interval straddles the limit, or on too few rows: never a pass.
        ("auc", (0.01, 0.03), _guardrails(1.4, ci=(1.2, 1.7)), 500, Decision.INCONCLUSIVE),
        ("auc", (0.01, 0.03), _guardrails(1.0, n=1999), 500, Decision.INCONCLUSIVE),
        ("auc", (-0.03, -0.01), _guardrails(1.0, n=1999), 500, Decision.KEEP),
        ("auc", (0.01, 0.03), _guardrails(ratio=float("nan")), 500, Decision.INCONCLUSIVE),
        ("auc", (0.01, 0.03), _guardrails(), 199, Decision.INCONCLUSIVE),
        ("auc", (float("nan"), float("nan")), _guardrails(), 500, Decision.INCONCLUSIVE),
    ],
)
def test_rule(
    metric: str,
    ci: tuple[float, float],
    guardrails: Guardrails,
    n_labeled: int,
    expected: Decision,
) -> None:
    evidence = Evidence(metric, _difference(*ci), 1000, n_labeled, 200, guardrails)
    assert decide(evidence).decision is expected


def test_no_paired_rows_is_inconclusive() -> None:
    evidence = Evidence("auc", None, 0, 0, 200, _guardrails())
    verdict = decide(evidence)
    assert verdict.decision is Decision.INCONCLUSIVE
    assert "no row was scored by both" in verdict.reason
