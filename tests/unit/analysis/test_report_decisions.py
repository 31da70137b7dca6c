"""The report's decisions end to end: inference mode, power, the latency guardrail on its
interval, the label-quality gates, selective labels, `--policy` and the error-rate
difference, through `compute_report` / `report_to_dict`, `compare` and the CLI.

Every data set is seeded; each test runs in well under a few seconds."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from contender import compare
from contender.analysis import summary_lines
from contender.analysis.data import LoggedRows
from contender.analysis.render_json import report_to_dict
from contender.analysis.report import ReportOptions, build_report, compute_report
from contender.cli.report import report
from contender.predictions.record import Feedback
from tests.unit.analysis.factories import (
    arm_log,
    classifier_data,
    classifier_rows,
    logged_rows,
    record,
    sqlite_store,
)

START = datetime(2025, 3, 1, tzinfo=UTC)
STORE_REQUESTS = 600
POLICY = """\
policy: v1
alpha: 0.05
inference: {mode: sequential, tuning_rows: 5000, burn_in_rows: 200}
primary: {metric: auc, promote_when: "ci.lower > 0", rollback_when: "ci.upper < 0"}
guardrails:
  - {metric: p99_latency_ratio, fail_when: "ci.lower > 1.5"}
  - {metric: error_rate_diff, fail_when: "ci.lower > 0"}
evaluation: {interval: 1h, consecutive_successes: 2, on_fail: rollback}
"""


def _report(rows: LoggedRows, **options: Any) -> dict[str, Any]:
    return report_to_dict(compute_report(rows, ReportOptions(**options)))


def _stamp(i: int, offset_s: float = 0.0) -> str:
    return (START + timedelta(seconds=i + offset_s)).isoformat(timespec="microseconds")


def _rows(n: int, seed: int, champion: float = 0.6, challenger: float = 1.4) -> LoggedRows:
    """One-row requests, all served by the champion (so the challenger is shadow work and
    every paired latency counts for the guardrail)."""
    return classifier_rows(n, np.random.default_rng(seed), champion, challenger)


# A small real store: a clearly better challenger, half the requests served by it, every
# label arriving 10 s after its request, and one label for a request never logged.


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    rng = np.random.default_rng(7)
    data = classifier_data(STORE_REQUESTS, rng, 0.6, 1.4)
    records, feedback = [], []
    for i in range(STORE_REQUESTS):
        a, b = float(data.champion[i]), float(data.challenger[i])
        latency = (float(rng.lognormal(2.3, 0.2)), float(rng.lognormal(2.3, 0.2)))
        served = "challenger" if i % 2 == 0 else "champion"
        records.append(
            record(f"q{i}", [[1 - a, a]], [[1 - b, b]], served_by=served, timestamp=_stamp(i),
                   latency_ms=latency)
        )  # fmt: skip
        feedback.append(Feedback(f"q{i}", 0, int(data.labels[i]), received_at=_stamp(i, 10.0)))
    feedback.append(Feedback("never-logged", 0, 1, received_at=_stamp(0)))
    return sqlite_store(tmp_path / "log.db", records, feedback)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(report)
    return app


def _run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


# 1. Inference mode


def test_default_inference_is_sequential_and_wider_than_fixed() -> None:
    rows = _rows(3000, 1, 1.0, 1.3)
    sequential = _report(rows)
    fixed = _report(rows, inference="fixed")
    assert (sequential["inference"], fixed["inference"]) == ("sequential", "fixed")
    assert (sequential["alpha"], sequential["tuning_rows"]) == (0.05, 5000)
    seq, fix = sequential["difference"]["auc"], fixed["difference"]["auc"]
    # The same point estimate (about +0.058), the always-valid interval strictly around
    # the one-look one (about +0.043..+0.072 against +0.048..+0.067).
    assert seq["estimate"] == pytest.approx(fix["estimate"])
    assert seq["estimate"] == pytest.approx(0.0576, abs=1e-3)
    assert seq["ci"][0] < fix["ci"][0] <= fix["estimate"] <= fix["ci"][1] < seq["ci"][1]
    assert seq["p_value"] > fix["p_value"]


def test_unknown_inference_mode_exits_1_naming_it(app: typer.Typer, store_url: str) -> None:
    result = _run(app, "--model", "m", "--log-store", store_url, "--inference", "bogus")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "'bogus'" in lines[0]
    assert "sequential or fixed" in lines[0]


# 2. Power


@pytest.mark.parametrize("inference", ["sequential", "fixed"])
def test_power_minimum_detectable_roughly_halves_with_4x_rows(inference: str) -> None:
    small = _report(_rows(2000, 2, 1.0, 1.2), inference=inference)["power"]
    large = _report(_rows(8000, 2, 1.0, 1.2), inference=inference)["power"]
    assert small["metric"] == large["metric"] == "auc"
    assert small["target_effect"] == large["target_effect"] == 0.01
    assert small["power"] == 0.8
    # sequential 0.0220 -> 0.0114, fixed 0.0156 -> 0.0082: ratio about 0.52 (sqrt(1/4),
    # a little more in sequential mode, whose multiplier grows slowly past tuning_rows).
    assert 0 < large["minimum_detectable"] < small["minimum_detectable"]
    assert 0.4 < large["minimum_detectable"] / small["minimum_detectable"] < 0.6


def test_power_rows_needed_and_still_needed_are_consistent() -> None:
    for n in (2000, 8000):
        body = _report(_rows(n, 2, 1.0, 1.2))
        power = body["power"]
        assert body["n_labeled"] == n
        assert power["rows_needed"] > 0
        assert power["rows_still_needed"] == max(0, power["rows_needed"] - body["n_labeled"])
        # A +0.01 AUC needs ~16-17k labeled rows always-valid: not reached at 2k or 8k.
        assert power["rows_needed"] >= body["n_labeled"] + power["rows_still_needed"]
        assert power["rows_still_needed"] > 0
    fixed = _report(_rows(2000, 2, 1.0, 1.2), inference="fixed")["power"]
    sequential = _report(_rows(2000, 2, 1.0, 1.2))["power"]
    assert fixed["rows_needed"] < sequential["rows_needed"]  # ~8.2k against ~16.3k


def test_power_large_target_effect_is_reached() -> None:
    rows = _rows(2000, 3)  # AUC about 0.79 against 0.97
    accuracy = _report(rows, metric="accuracy", target_effect=0.5)["power"]
    assert (accuracy["metric"], accuracy["target_effect"]) == ("accuracy", 0.5)
    assert 0 < accuracy["rows_needed"] < 2000  # about 66
    assert accuracy["rows_still_needed"] == 0
    auc = _report(rows, target_effect=0.1)["power"]
    assert 0 < auc["rows_needed"] < 2000  # about 496
    assert auc["rows_still_needed"] == 0
    # An AUC target that would pass 1 (0.79 + 0.5) has no Hanley-McNeil count: None.
    beyond = _report(rows, target_effect=0.5)["power"]
    assert beyond["target_effect"] == 0.5
    assert beyond["rows_needed"] is None
    assert beyond["rows_still_needed"] is None


def test_terminal_output_has_a_power_line(app: typer.Typer, store_url: str) -> None:
    result = _run(app, "--model", "m", "--log-store", store_url, "--target-effect", "0.1")
    assert result.exit_code == 0, result.output
    line = next(text for text in result.stdout.splitlines() if "power" in text)
    assert "difference in auc of" in line
    assert f"{STORE_REQUESTS} labeled rows" in line
    assert "+0.1 needs about" in line
    assert "(reached)" in line  # about 480 rows for +0.1, 600 labeled


# 3. The latency guardrail on its interval


def test_too_few_latencies_make_a_better_challenger_inconclusive() -> None:
    body = _report(_rows(1500, 4))
    assert body["difference"]["auc"]["ci"][0] > 0.1  # about +0.14..+0.21
    assert body["latency_ratio"]["status"] == "inconclusive"
    assert body["latency_ratio"]["n_champion"] == body["latency_ratio"]["n_challenger"] == 1500
    assert body["verdict"] == "inconclusive"
    assert "latency guardrail is inconclusive" in body["verdict_reason"]
    assert "only 1,500 latencies for the smaller arm" in body["verdict_reason"]


def test_enough_similar_latencies_promote() -> None:
    body = _report(_rows(2500, 4))
    latency = body["latency_ratio"]
    assert latency["status"] == "pass"
    assert latency["n_champion"] == latency["n_challenger"] == 2500
    assert latency["ci"][1] <= 1.5  # ratio about 1.02, CI about 0.98..1.05
    assert body["verdict"] == "promote"
    assert body["verdict_reason"].startswith("challenger is better")


def test_three_times_slower_challenger_is_kept() -> None:
    rows = classifier_rows(2500, np.random.default_rng(4), 0.6, 1.4, challenger_latency_factor=3)
    body = _report(rows)
    latency = body["latency_ratio"]
    assert latency["status"] == "fail"
    assert latency["ci"][0] > 1.5  # ratio about 3.07, CI about 2.95..3.16
    assert latency["ratio"] == pytest.approx(3.0, rel=0.1)
    assert body["verdict"] == "keep"
    assert body["verdict_reason"].startswith("challenger p99 latency is 3.")


# 4. Label quality


def _weighted_records(n: int, served: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Records as `log export` writes them, each with challenger_weight 0.5; every 20th
    has a label (1,000 labeled, enough for the verdict, and a quicker store)."""
    rng = np.random.default_rng(seed)
    data = classifier_data(n, rng, 0.6, 1.4)
    records = []
    for i in range(n):
        a, b = float(data.champion[i]), float(data.challenger[i])
        logged = record(
            f"q{i}",
            [[1 - a, a]],
            [[1 - b, b]],
            served_by="challenger" if served[i] else "champion",
            timestamp=_stamp(i),
        )
        row = replace(logged, challenger_weight=0.5).to_row()
        records.append({**row, "label": int(data.labels[i])} if i % 20 == 0 else row)
    return records


def test_sample_ratio_mismatch_makes_the_report_inconclusive() -> None:
    n = 20_000
    served = np.zeros(n, bool)
    served[np.random.default_rng(5).permutation(n)[: int(0.47 * n)]] = True
    body = compare(_weighted_records(n, served, 5))
    quality = body["label_quality"]
    assert quality["srm"] == {"n": n, "expected_share": 0.5, "observed_share": 0.47}
    assert quality["srm_p"] < 0.001
    assert body["verdict"] == "inconclusive"
    assert body["verdict_reason"].startswith("sample ratio mismatch")
    assert quality["gates_failed"] == [body["verdict_reason"]]


def test_served_share_as_drawn_passes_the_srm_gate() -> None:
    n = 20_000
    rng = np.random.default_rng(6)
    rows = classifier_rows(n, rng, 0.6, 1.4)
    served = rng.random(n) < 0.5
    body = _report(replace(rows, challenger_served=served, challenger_weight=np.full(n, 0.5)))
    quality = body["label_quality"]
    assert quality["srm"]["n"] == n
    assert abs(quality["srm"]["observed_share"] - 0.5) < 0.01
    assert quality["srm_p"] >= 0.001
    assert quality["gates_failed"] == []
    assert "sample ratio mismatch" not in body["verdict_reason"]
    assert body["verdict"] == "promote"


def test_labels_for_one_arm_only_make_the_report_inconclusive() -> None:
    rng = np.random.default_rng(8)
    rows = classifier_rows(1000, rng, 0.6, 1.4)
    served = rng.random(1000) < 0.5
    rows = replace(
        rows,
        challenger_served=served,
        challenger_weight=np.full(1000, 0.5),
        labels=np.where(served, rows.labels, np.nan),
    )
    body = _report(rows)
    quality = body["label_quality"]
    assert quality["labeled_share_by_arm"] == {"champion": 0.0, "challenger": 1.0}
    assert body["n_labeled"] == int(served.sum()) >= 200
    assert body["verdict"] == "inconclusive"
    assert body["verdict_reason"].startswith("labels arrive for 0.0% of the rows the champion")
    # With served-positive the arm gap is the design, not a gate.
    selective = _report(rows, labels_follow="served-positive", audit_rate=0.5, metric="precision")
    assert selective["label_quality"]["gates_failed"] == []


def test_orphan_feedback_and_label_delay_from_a_real_store(store_url: str) -> None:
    body = report_to_dict(build_report(store_url, "m"))
    quality = body["label_quality"]
    assert quality["orphan_feedback"] == 1
    assert quality["label_delay_s"] == {"p50": pytest.approx(10.0), "p95": pytest.approx(10.0)}
    assert quality["labeled_share"] == 1.0
    assert quality["srm_p"] is None  # records without a logged weight


# 5. Selective labels


def _selective(n: int, seed: int, audit_rate: float) -> tuple[LoggedRows, float]:
    """Labels only for rows the served model flagged (score >= 0.5) plus an audit share of
    the rest, weight 0.5; and the true recall difference on all rows."""
    rng = np.random.default_rng(seed)
    full = classifier_rows(n, rng, 0.8, 1.4)
    served = rng.random(n) < 0.5
    champion, challenger = full.champion.scores, full.challenger.scores
    flagged = np.where(served, challenger, champion) >= 0.5
    labeled = flagged | (rng.random(n) < audit_rate)
    positive = full.labels == 1
    true_difference = float(
        ((challenger >= 0.5) & positive).sum() / positive.sum()
        - ((champion >= 0.5) & positive).sum() / positive.sum()
    )
    rows = replace(
        full,
        challenger_served=served,
        challenger_weight=np.full(n, 0.5),
        labels=np.where(labeled, full.labels, np.nan),
    )
    return rows, true_difference


def test_weighted_recall_difference_recovers_the_truth() -> None:
    rows, truth = _selective(20_000, 0, 0.02)
    body = _report(rows, labels_follow="served-positive", audit_rate=0.02, metric="recall")
    weighted = body["weighted"]["recall"]
    naive = body["difference"]["recall"]["estimate"]
    # Truth +0.127, weighted +0.125 (CI +0.113..+0.138), naive +0.075. Tolerance 0.03:
    # the weighted difference's bootstrap standard error is about 0.007 here (the audit
    # rows carry weight 1/0.02 = 50), so 0.03 is over four standard errors, while the
    # naive bias (~0.05: the unflagged positives are barely seen) is larger than that.
    assert abs(weighted["difference"] - truth) < 0.03
    assert weighted["difference_ci"][0] < truth < weighted["difference_ci"][1]
    assert abs(naive - truth) > abs(weighted["difference"] - truth) + 0.03
    assert weighted["not_identifiable"] is None
    assert body["primary_metric"] == "recall"
    assert body["verdict"] == "promote"


def test_recall_without_audit_is_not_identifiable() -> None:
    rows, _ = _selective(20_000, 0, 0.0)
    body = _report(rows, labels_follow="served-positive", audit_rate=0.0, metric="recall")
    assert body["verdict"] == "inconclusive"
    assert "not identifiable" in body["verdict_reason"]
    assert body["verdict_reason"].startswith("recall is not identifiable with audit_rate 0")
    assert body["weighted"]["recall"]["difference"] is None
    assert body["weighted"]["precision"]["not_identifiable"] is None
    report = compute_report(
        rows, ReportOptions(labels_follow="served-positive", audit_rate=0.0, metric="recall")
    )
    line = summary_lines.weighted_line(report)
    assert line is not None
    assert "recall not identifiable" in line
    assert "precision 0." in line  # identifiable without an audit: a number


def test_auc_under_served_positive_labels_is_not_identifiable() -> None:
    rows, _ = _selective(5000, 1, 0.02)
    body = _report(rows, labels_follow="served-positive", audit_rate=0.02)
    assert body["primary_metric"] == "auc"
    assert body["verdict"] == "inconclusive"
    assert body["verdict_reason"].startswith(
        "auc is not identifiable from labels that follow the served answer"
    )


# 6. --policy


def test_policy_json_adds_outcome_and_reason(
    app: typer.Typer, store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    result = _run(app, "--model", "m", "--log-store", store_url, "--json", "--policy", str(path))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    policy = body["policy"]
    assert {"source", "outcome", "reason"} <= policy.keys()
    # The AUC interval is clear of 0 and both guardrails are known not to fail.
    assert policy["outcome"] == "promote", policy["reason"]
    assert "primary auc promote_when ci.lower > 0" in policy["reason"]
    assert body["inference"] == "sequential"


def test_policy_panel_in_the_terminal(app: typer.Typer, store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    result = _run(app, "--model", "m", "--log-store", store_url, "--policy", str(path))
    assert result.exit_code == 0, result.output
    assert "policy" in result.stdout
    assert "PROMOTE" in result.stdout
    plain = _run(app, "--model", "m", "--log-store", store_url)
    assert not any(line.count("policy") for line in plain.stdout.splitlines())


# 7. The error-rate difference


def test_error_rate_difference_on_paired_requests() -> None:
    n = 3000
    rng = np.random.default_rng(9)
    data = classifier_data(n, rng, 0.6, 1.4)
    champion_failed = rng.random(n) < 0.01
    challenger_failed = rng.random(n) < 0.04
    skipped: list[str | None] = ["overload" if s else None for s in rng.random(n) < 0.1]
    rows = logged_rows(
        arm_log(data.champion, failed=champion_failed, list_valued=True, version="1"),
        arm_log(
            data.challenger,
            failed=challenger_failed,
            list_valued=True,
            version="2",
            skipped=skipped,
        ),
        data.labels,
    )
    body = _report(rows)
    difference = body["difference"]["error_rate"]
    assert {"estimate", "ci", "p_value"} <= difference.keys()
    paired = rows.champion.invoked & rows.challenger.invoked
    expected = float(
        (rows.challenger.failed[paired]).mean() - (rows.champion.failed[paired]).mean()
    )
    assert difference["estimate"] == pytest.approx(expected)  # about +0.03
    assert difference["ci"][0] <= difference["estimate"] <= difference["ci"][1]
    assert 0 <= difference["p_value"] <= 1
    assert difference["ci"][0] > 0
    assert difference["p_value"] < 0.05
    # Without skips the paired requests are all requests: the arms' error rates.
    full = _report(
        logged_rows(
            arm_log(data.champion, failed=champion_failed, list_valued=True),
            arm_log(data.challenger, failed=challenger_failed, list_valued=True, version="2"),
            data.labels,
        )
    )
    assert full["difference"]["error_rate"]["estimate"] == pytest.approx(
        full["challenger"]["error_rate"] - full["champion"]["error_rate"]
    )
