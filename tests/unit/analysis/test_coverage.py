"""Coverage in the report, and skipped work that is no model failure: real SQLite stores
and constructed logs."""

from __future__ import annotations

import io
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from contender.analysis.coverage import Coverage, coverage
from contender.analysis.data import LoggedRows
from contender.analysis.load import load_logged_rows
from contender.analysis.mlflow_log import report_metrics
from contender.analysis.render_html import render_html
from contender.analysis.render_json import coverage_to_dict, report_to_dict
from contender.analysis.render_terminal import render_terminal
from contender.analysis.report import Report, ReportOptions, compute_report
from contender.analysis.verdict import Decision
from contender.predictions.store import SqlPredictionStore
from tests.unit.analysis.factories import arm_log, classifier_rows, logged_rows, record

OPTIONS = ReportOptions(n_replicates=200)
FIXTURE = Path(__file__).parent.parent.parent / "fixtures" / "store-0.1.0.db"
P = [[0.4, 0.6]]


@pytest.fixture
def skipping_store(tmp_path: Path) -> str:
    """Eleven one-row requests: every way a request can end up (not) scored by both."""
    records = [
        record("both-1", P, P),
        record("both-2", P, P, served_by="challenger"),
        *(record(f"overload-{i}", P, None, challenger_skipped="overload") for i in range(3)),
        *(
            record(f"breaker-{i}", P, None, challenger_skipped="breaker_open", fallback=True)
            for i in range(2)
        ),
        # The challenger served; the champion's shadow work found no capacity.
        record("champion-overload", None, P, served_by="challenger", champion_skipped="overload"),
        record("challenger-error", P, None, challenger_error="timeout", fallback=True),
        record("champion-error", None, P, champion_error="boom", n_inputs=1),
        record("not-invoked", P, None, versions=("1", None)),
    ]
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store = SqlPredictionStore(url)
    store.append_many(records)
    store.close()
    return url


EXPECTED = {
    "n_requests": 11,
    "both_scored": 2,
    "share": 2 / 11,
    "not_scored": {"overload": 4, "breaker_open": 2, "error": 2, "not_invoked": 1},
    "skipped_by_arm": {
        "champion": {"overload": 1, "breaker_open": 0},
        "challenger": {"overload": 3, "breaker_open": 2},
    },
}


def test_coverage_counts_every_request_under_its_first_reason(skipping_store: str) -> None:
    covered = coverage(load_logged_rows(skipping_store, "m"))
    assert coverage_to_dict(covered) == EXPECTED
    assert covered.n_skipped == 6


def test_skipped_arms_did_not_run(skipping_store: str) -> None:
    rows = load_logged_rows(skipping_store, "m")
    ids = list(rows.request_ids)
    # Skipped requests still belong to the pair: a skipped arm keeps its version.
    assert len(ids) == 11
    assert (rows.champion.version, rows.challenger.version) == ("1", "2")
    ran_challenger = [i for i, ran in zip(ids, rows.challenger.invoked, strict=True) if ran]
    assert ran_challenger == [
        "both-1", "both-2", "champion-overload", "challenger-error", "champion-error"
    ]  # fmt: skip
    assert not rows.champion.invoked[ids.index("champion-overload")]
    assert rows.champion.invoked.sum() == 10
    assert not (rows.challenger.failed & ~rows.challenger.invoked).any()


def test_skips_are_no_errors_and_not_in_the_denominator(skipping_store: str) -> None:
    report = compute_report(load_logged_rows(skipping_store, "m"), OPTIONS)
    # Five challenger runs, one timeout; the five skipped requests count nowhere.
    assert (report.challenger.n, report.challenger.error_rate) == (5, 1 / 5)
    assert (report.champion.n, report.champion.error_rate) == (10, 1 / 10)
    # Paired metrics: only rows both scored; guardrails: requests both ran on.
    assert report.n_paired == 2
    assert report.guardrails.n_paired_requests == 4


def test_json_carries_coverage(skipping_store: str) -> None:
    report = compute_report(load_logged_rows(skipping_store, "m"), OPTIONS)
    body = json.loads(json.dumps(report_to_dict(report)))
    assert body["coverage"] == EXPECTED
    assert body["n_requests"] == body["coverage"]["n_requests"]


def test_share_is_null_without_requests() -> None:
    empty = Coverage(0, 0, {"error": 0}, {"champion": {}, "challenger": {}})
    assert coverage_to_dict(empty)["share"] is None


def _old_store(tmp_path: Path, migrate: bool) -> str:
    path = tmp_path / ("migrated.db" if migrate else "old.db")
    shutil.copy(FIXTURE, path)
    if migrate:
        SqlPredictionStore(f"sqlite:///{path}").close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("migrate", [False, True])
def test_a_store_written_by_0_1_0_reads_as_never_skipped(tmp_path: Path, migrate: bool) -> None:
    rows = load_logged_rows(_old_store(tmp_path, migrate), "fixture")
    covered = coverage_to_dict(coverage(rows))
    assert (covered["n_requests"], covered["both_scored"]) == (20, 17)
    assert covered["not_scored"] == {"overload": 0, "breaker_open": 0, "error": 3, "not_invoked": 0}
    assert rows.challenger.invoked.all()
    assert rows.challenger.failed.sum() == 3


def _rows_with_skips(n: int, overload: int, breaker_open: int) -> LoggedRows:
    """`n` classifier requests whose challenger was skipped on the first ones."""
    rows = classifier_rows(n, np.random.default_rng(60), 0.6, 1.4)
    reasons: list[str | None] = [None] * n
    reasons[:overload] = ["overload"] * overload
    reasons[overload : overload + breaker_open] = ["breaker_open"] * breaker_open
    challenger = arm_log(
        rows.challenger.scores,
        latency_ms=rows.challenger.latency_ms,
        list_valued=True,
        version="2",
        skipped=reasons,
    )
    return logged_rows(rows.champion, challenger, rows.labels)


@pytest.fixture
def skipped_report() -> Report:
    return compute_report(_rows_with_skips(4000, overload=1000, breaker_open=60), OPTIONS)


def test_terminal_shows_coverage(skipped_report: Report) -> None:
    buffer = io.StringIO()
    render_terminal(skipped_report, Console(file=buffer, width=100))
    text = buffer.getvalue()
    assert "73.5% of 4,000 requests scored by both" in text
    assert "not scored: overload 1,000, breaker open 60" in text
    # Per arm, in the metrics table: the count, the reason below it.
    assert re.search(r"skipped +0 +1,000 *\n *overload", text)
    assert re.search(r"skipped +0 +60 *\n *breaker open", text)


def test_terminal_without_skips_has_no_skip_rows() -> None:
    report = compute_report(classifier_rows(300, np.random.default_rng(61)), OPTIONS)
    buffer = io.StringIO()
    render_terminal(report, Console(file=buffer, width=100))
    text = buffer.getvalue()
    assert "100.0% of 300 requests scored by both" in text
    assert "not scored" not in text
    assert "skipped" not in text


def test_html_shows_coverage(skipped_report: Report) -> None:
    page = render_html(skipped_report)
    assert "<h2>Coverage</h2>" in page
    assert "73.5% of 4,000 requests" in page
    assert "<td>breaker open</td><td>60</td><td>1.5%</td>" in page
    assert "Requests by coverage" in page
    assert page.count("plotly.js v") == 1  # still inlined once, now in the first figure
    assert page.index("Requests by coverage") < page.index("Latency distribution")


def test_low_coverage_is_noted_without_changing_the_verdict(skipped_report: Report) -> None:
    reason = skipped_report.verdict.reason
    assert "note: only 73.5% of 4,000 requests were scored by both models" in reason
    assert reason.endswith("(not scored: overload 1,000, breaker open 60)")
    # Only the requests both scored, without the skipped ones: the same verdict, no note.
    full, keep = _rows_with_skips(4000, 0, 0), np.arange(1060, 4000)
    champion, challenger = (
        arm_log(arm.scores[keep], latency_ms=arm.latency_ms[keep], list_valued=True, version=v)
        for arm, v in ((full.champion, "1"), (full.challenger, "2"))
    )
    baseline = compute_report(logged_rows(champion, challenger, full.labels[keep]), OPTIONS).verdict
    assert skipped_report.verdict.decision is baseline.decision is Decision.PROMOTE
    assert reason.startswith(f"{baseline.reason}; note: ")


def test_a_few_skips_or_a_challenger_not_invoked_get_no_note() -> None:
    few = compute_report(_rows_with_skips(4000, overload=200, breaker_open=0), OPTIONS)
    assert few.coverage.share == pytest.approx(0.95)
    assert "note:" not in few.verdict.reason
    rows = classifier_rows(300, np.random.default_rng(62))
    nothing = np.zeros(300, bool)
    absent = replace(arm_log(np.full(300, np.nan)), invoked=nothing, predicted=nothing)
    report = compute_report(logged_rows(rows.champion, absent, rows.labels), OPTIONS)
    assert report.coverage.not_scored["not_invoked"] == 300
    assert "note:" not in report.verdict.reason


def test_mlflow_metrics_carry_coverage(skipped_report: Report) -> None:
    metrics = report_metrics(skipped_report)
    assert metrics["coverage_share"] == pytest.approx(0.735)
    assert metrics["coverage_not_scored_breaker_open"] == 60


def test_a_challenger_skipped_everywhere_is_inconclusive_and_says_why() -> None:
    report = compute_report(_rows_with_skips(300, overload=300, breaker_open=0), OPTIONS)
    assert report.verdict.decision is Decision.INCONCLUSIVE
    assert report.verdict.reason.startswith("no row was scored by both models")
    note = "note: only 0.0% of 300 requests were scored by both models (not scored: overload 300)"
    assert report.verdict.reason.endswith(note)
    assert report.challenger.n == 0
    assert report_to_dict(report)["challenger"]["error_rate"] is None
