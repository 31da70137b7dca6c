"""`contender report` end to end on a real SQLite store, through Typer's CliRunner."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from contender.cli.report import report
from contender.predictions.record import Feedback
from tests.unit.analysis.factories import classifier_data, record, sqlite_store

SPEC_KEYS = {
    "model",
    "n_requests",
    "n_rows",
    "n_labeled",
    "served_share",
    "agreement",
    "champion",
    "challenger",
    "difference",
    "verdict",
}
ARM_KEYS = {"version", "n", "error_rate", "latency_ms"}
CLASSIFIER_METRICS = ("auc", "precision", "recall", "accuracy")
ONE_ROW = 4400


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(report)
    return app


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """4,400 one-row requests (a better challenger, half served by it: enough latencies
    per arm for the p99 guardrail) and 5 three-row ones."""
    rng = np.random.default_rng(40)
    data = classifier_data(ONE_ROW + 15, rng, 0.6, 1.4)
    records, feedback = [], []
    for i in range(ONE_ROW):
        served = "challenger" if i % 2 == 0 else "champion"
        a, b = float(data.champion[i]), float(data.challenger[i])
        timestamp = f"2025-03-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00"
        latency = (float(rng.lognormal(2.3, 0.2)), float(rng.lognormal(2.3, 0.2)))
        records.append(
            record(f"q{i}", [[1 - a, a]], [[1 - b, b]], served_by=served, timestamp=timestamp,
                   latency_ms=latency)
        )  # fmt: skip
        feedback.append(Feedback(f"q{i}", 0, int(data.labels[i])))
    for j in range(5):
        index = slice(ONE_ROW + 3 * j, ONE_ROW + 3 + 3 * j)
        a_rows = [[1 - x, x] for x in data.champion[index].tolist()]
        b_rows = [[1 - x, x] for x in data.challenger[index].tolist()]
        records.append(
            record(f"multi{j}", a_rows, b_rows, timestamp="2025-03-01T13:00:00.000000+00:00")
        )
        feedback.append(Feedback(f"multi{j}", 1, int(data.labels[ONE_ROW + 1 + 3 * j])))
    return sqlite_store(tmp_path / "log.db", records, feedback)


def _run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "160"})


def test_terminal_table(app: typer.Typer, store_url: str) -> None:
    result = _run(app, "--model", "m", "--log-store", store_url)
    assert result.exit_code == 0, result.output
    for text in ("champion v1", "challenger v2", "auc *", "p99 ms", "verdict", "PROMOTE"):
        assert text in result.stdout
    assert "100.0% of 4,405 requests scored by both" in result.stdout


def test_json_has_every_spec_key(app: typer.Typer, store_url: str) -> None:
    result = _run(app, "--model", "m", "--log-store", store_url, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body.keys() >= SPEC_KEYS
    assert (body["n_requests"], body["n_rows"], body["n_labeled"]) == (4405, 4415, 4405)
    assert body["served_share"]["challenger"] == pytest.approx(2200 / 4405)
    for arm in ("champion", "challenger"):
        assert body[arm].keys() >= ARM_KEYS
        assert set(body[arm]["latency_ms"]) == {"p50", "p95", "p99"}
        for metric in CLASSIFIER_METRICS:
            low, high = body[arm][f"{metric}_ci"]
            assert low <= body[arm][metric] <= high
    for metric in CLASSIFIER_METRICS:
        difference = body["difference"][metric]
        assert {"estimate", "ci", "p_value"} <= difference.keys()
        assert difference["estimate"] == pytest.approx(
            body["challenger"][metric] - body["champion"][metric]
        )
    assert body["verdict"] == "promote"
    assert body["verdict_reason"].startswith("challenger is better")
    assert body["coverage"] == {
        "n_requests": 4405,
        "both_scored": 4405,
        "share": 1.0,
        "not_scored": {"overload": 0, "breaker_open": 0, "error": 0, "not_invoked": 0},
        "skipped_by_arm": {
            "champion": {"overload": 0, "breaker_open": 0},
            "challenger": {"overload": 0, "breaker_open": 0},
        },
    }


def test_json_is_reproducible_with_a_seed(app: typer.Typer, store_url: str) -> None:
    args = ("--model", "m", "--log-store", store_url, "--json", "--seed", "3")
    assert _run(app, *args).stdout == _run(app, *args).stdout


def test_options_change_the_verdict(app: typer.Typer, store_url: str) -> None:
    result = _run(app, "--model", "m", "--log-store", store_url, "--json", "--min-labeled", "9000")
    assert json.loads(result.stdout)["verdict"] == "inconclusive"
    result = _run(app, "--model", "m", "--log-store", store_url, "--json", "--metric", "log_loss")
    assert json.loads(result.stdout)["primary_metric"] == "log_loss"


def test_html_is_written_and_self_contained(
    app: typer.Typer, store_url: str, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    result = _run(app, "--model", "m", "--log-store", store_url, "--html", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "Plotly.newPlot" in text
    assert not re.search(r"<script[^>]*\ssrc=[\"']?https?:", text, re.IGNORECASE)
    assert not re.search(r"<link[^>]*href=[\"']?https?:", text, re.IGNORECASE)
    for title in (
        "ROC curve",
        "Precision-recall curve",
        "Latency distribution",
        "95% intervals",
        "Coverage",
    ):
        assert title in text
    assert "promote" in text


def test_labels_file_overrides_and_adds(app: typer.Typer, store_url: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,label\nmulti0,0,1\nmulti0,2,0\n")
    result = _run(app, "--model", "m", "--log-store", store_url, "--json", "--labels", str(labels))
    assert json.loads(result.stdout)["n_labeled"] == 4407


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--log-store", "sqlite:////nonexistent/dir/log.db"), "log store not found"),
        (("--model", "unknown"), "no logged records for model 'unknown'"),
        (("--since", "last tuesday"), "--since 'last tuesday' is not an ISO date"),
        (("--labels", "/nonexistent/labels.csv"), "labels file not found"),
        (("--metric", "rmse"), "--metric 'rmse' does not fit a classifier"),
    ],
)
def test_errors_exit_non_zero_with_one_line(
    app: typer.Typer, store_url: str, args: tuple[str, ...], message: str
) -> None:
    base = {"--model": "m", "--log-store": store_url}
    overrides = dict(zip(args[::2], args[1::2], strict=True))
    argv = [item for pair in {**base, **overrides}.items() for item in pair]
    result = _run(app, *argv)
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_labels_file_is_reported(app: typer.Typer, store_url: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nq1,maybe\n")
    result = _run(app, "--model", "m", "--log-store", store_url, "--labels", str(labels))
    assert result.exit_code == 1
    assert "line 2: label 'maybe' is not a number" in result.stderr


class FakeMlflow(types.ModuleType):
    """Records what `log_report_to_mlflow` asks of mlflow, without importing it."""

    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: dict[str, Any] = {}

    def set_tracking_uri(self, uri: str) -> None:
        self.calls["tracking_uri"] = uri

    def set_experiment(self, name: str) -> None:
        self.calls["experiment"] = name

    def start_run(self, run_name: str) -> Any:
        self.calls["run_name"] = run_name
        run = types.SimpleNamespace(info=types.SimpleNamespace(run_id="run-1"))
        fake = self

        class Context:
            def __enter__(self) -> Any:
                return run

            def __exit__(self, *exc: object) -> None:
                fake.calls["ended"] = True

        return Context()

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.calls["tags"] = tags

    def log_params(self, params: dict[str, Any]) -> None:
        self.calls["params"] = params

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.calls["metrics"] = metrics

    def log_text(self, text: str, name: str) -> None:
        self.calls[name] = text

    def log_dict(self, value: dict[str, Any], name: str) -> None:
        self.calls[name] = value


def test_log_to_mlflow(app: typer.Typer, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    result = _run(
        app, "--model", "m", "--log-store", store_url, "--json",
        "--log-to-mlflow", "--tracking-uri", "http://mlflow:5000",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MLflow run run-1 logged" in result.stderr
    json.loads(result.stdout)  # the note did not leak into the JSON
    calls = fake.calls
    assert (calls["tracking_uri"], calls["experiment"]) == (
        "http://mlflow:5000",
        "contender-reports",
    )
    assert calls["tags"]["contender.champion_version"] == "1"
    assert calls["tags"]["contender.challenger_version"] == "2"
    assert calls["tags"]["contender.verdict"] == "promote"
    assert {"champion_auc", "challenger_auc", "diff_auc", "diff_auc_p_value"} <= calls[
        "metrics"
    ].keys()
    assert {"latency_p99_ratio_ci_hi", "power_minimum_detectable", "labeled_share"} <= calls[
        "metrics"
    ].keys()
    assert calls["params"]["inference"] == "sequential"
    assert "<html" in calls["report.html"]
    assert calls["report.json"]["verdict"] == "promote"
    assert calls["ended"]


def test_mlflow_failures_are_one_line(
    app: typer.Typer, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()

    def unreachable(name: str) -> None:
        raise ConnectionError("API request to http://mlflow:5000 failed\nretries exhausted")

    fake.set_experiment = unreachable  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    result = _run(app, "--model", "m", "--log-store", store_url, "--log-to-mlflow")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: could not log the report to MLflow: API request to http://mlflow:5000 failed"
    )


def test_registered_in_the_contender_app(store_url: str) -> None:
    from contender.cli.main import app

    result = CliRunner().invoke(app, ["report", "--model", "m", "--log-store", store_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "m"


def test_latest_verdict_for_promote(store_url: str, tmp_path: Path) -> None:
    from contender.analysis.report import latest_verdict

    verdict, reason, judged = latest_verdict(store_url, "m")
    assert verdict == "promote"
    assert judged is not None
    assert reason.startswith("challenger is better")
    # Flipped labels turn the better challenger into the worse one.
    truth = classifier_data(ONE_ROW + 15, np.random.default_rng(40), 0.6, 1.4).labels
    labels = tmp_path / "labels.csv"
    flipped = "".join(f"q{i},{1 - int(truth[i])}\n" for i in range(ONE_ROW))
    labels.write_text("request_id,label\n" + flipped)
    verdict, reason, _ = latest_verdict(store_url, "m", labels_csv=labels)
    assert verdict == "keep"
    assert reason.startswith("challenger is worse")
