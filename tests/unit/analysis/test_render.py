"""Rendering a Report: JSON without labels, terminal, HTML for regressors, MLflow metrics."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from contender.analysis import formatting as fmt
from contender.analysis.curves import paired_histogram, roc_and_pr
from contender.analysis.mlflow_log import report_metrics
from contender.analysis.render_html import render_html
from contender.analysis.render_json import report_to_dict, report_to_json
from contender.analysis.render_terminal import render_terminal
from contender.analysis.report import Report, ReportOptions, compute_report
from tests.unit.analysis.factories import arm_log, classifier_rows, logged_rows

OPTIONS = ReportOptions(n_replicates=200)


@pytest.fixture
def regressor_report() -> Report:
    rng = np.random.default_rng(50)
    labels = rng.normal(100, 20, 1200)
    rows = logged_rows(
        arm_log(labels + rng.normal(0, 10, 1200), rows_per_request=3),
        arm_log(labels + rng.normal(1, 7, 1200), rows_per_request=3, version="2"),
        labels,
        rows_per_request=3,
    )
    return compute_report(rows, OPTIONS)


def test_without_labels_the_json_has_no_quality_keys() -> None:
    rows = classifier_rows(300, np.random.default_rng(51))
    report = compute_report(rows.with_labels(np.full(300, np.nan)), OPTIONS)
    body = report_to_dict(report)
    assert body["n_labeled"] == 0
    assert set(body["difference"]) == {"error_rate"}  # operational, needs no labels
    assert "auc" not in body["champion"]
    assert body["verdict_reason"].startswith("no labeled rows scored by both")
    json.loads(report_to_json(report))


def test_undefined_values_are_null_in_json() -> None:
    rows = classifier_rows(300, np.random.default_rng(52))
    one_class = rows.with_labels(np.ones(300))
    body = report_to_dict(compute_report(one_class, OPTIONS))
    assert body["champion"]["auc"] is None
    assert body["difference"]["auc"]["ci"] == [None, None]
    assert body["verdict"] == "inconclusive"


def test_regressor_json_has_rmse_and_mae(regressor_report: Report) -> None:
    body = report_to_dict(regressor_report)
    assert {"rmse", "rmse_ci", "mae", "mae_ci"} <= body["champion"].keys()
    assert set(body["difference"]) == {"rmse", "mae", "error_rate"}
    assert body["n_rows"] == 1200
    assert body["n_requests"] == 400


def test_regressor_html_draws_scatter_and_errors(regressor_report: Report) -> None:
    page = render_html(regressor_report)
    assert "Predicted against actual" in page
    assert "Errors (prediction minus label)" in page
    assert "ROC curve" not in page
    assert page.count("plotly.js v") == 1  # inlined once
    assert not re.search(r"<script[^>]*\ssrc=", page)


def test_terminal_output_escapes_markup_and_shows_the_verdict(regressor_report: Report) -> None:
    buffer = io.StringIO()
    render_terminal(regressor_report, Console(file=buffer, width=140))
    text = buffer.getvalue()
    assert "rmse *" in text
    assert regressor_report.verdict.decision.value.upper() in text
    assert "p99 ms" in text


def test_mlflow_metrics_are_flat_and_defined(regressor_report: Report) -> None:
    metrics = report_metrics(regressor_report)
    assert {"champion_rmse", "challenger_rmse_ci_hi", "diff_mae_p_value"} <= metrics.keys()
    assert all(np.isfinite(value) for value in metrics.values())


def test_roc_points_are_exact_at_kept_thresholds() -> None:
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(53)
    labels = (rng.random(5000) < 0.3).astype(float)
    scores = (labels + rng.normal(0, 1, 5000)).round(3)
    roc, pr = roc_and_pr(scores, labels, max_points=100_000)
    assert roc is not None
    assert pr is not None
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc.x, fpr, atol=1e-12)
    np.testing.assert_allclose(roc.y, tpr, atol=1e-12)
    thinned, _ = roc_and_pr(scores, labels, max_points=50)
    assert thinned is not None
    assert len(thinned.x) <= 51


def test_histograms_share_bins_and_clip_the_tail() -> None:
    histogram = paired_histogram(np.r_[np.ones(999), 1e6], np.full(10, 2.0))
    assert histogram.champion_share.sum() == pytest.approx(1.0)
    assert histogram.edges[-1] < 1e6  # the outlier is in the last bin, not stretching it
    assert histogram.champion_share[-1] == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.81234, "0.8123"), (12.3456, "12.346"), (1234.56, "1234.6"), (float("nan"), "-")],
)
def test_number_formatting(value: float, text: str) -> None:
    assert fmt.number(value) == text


def test_p_value_formatting() -> None:
    assert fmt.p_value(0.0004) == "<0.001"
    assert fmt.p_equals(0.0004) == "p<0.001"
    assert fmt.p_equals(0.0423) == "p=0.042"


def test_a_log_without_challenger_renders_dashes() -> None:
    from contender.analysis.data import ArmLog

    rows = classifier_rows(100, np.random.default_rng(54))
    absent = ArmLog(
        version=None,
        invoked=np.zeros(100, bool),
        failed=np.zeros(100, bool),
        predicted=np.zeros(100, bool),
        skipped=np.full(100, None, object),
        latency_ms=np.full(100, np.nan),
        scores=np.full(100, np.nan),
        list_valued=False,
    )
    report = compute_report(logged_rows(rows.champion, absent, rows.labels), OPTIONS)
    assert report.verdict.reason.startswith("no row was scored by both")
    buffer = io.StringIO()
    render_terminal(report, Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "challenger (none)" in text
    assert "nan" not in text
    assert "challenger (none)" in render_html(report)
    assert report_to_dict(report)["challenger"]["error_rate"] is None
