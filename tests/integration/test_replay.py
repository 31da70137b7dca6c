"""`contender replay` and `report --replay`: a third version judged on logged traffic.

A real `mlflow server` holds a champion (1, Production), a challenger (2, Staging) and a
third version registered in no slot. A real service logs labeled traffic; `contender
replay` scores every logged record with version 3, each prediction equal to version 3's
own for that input; `report --replay 3 --json` gives both models' AUC on the same rows,
each within 0.005 of scikit-learn's; a second run adds nothing, an interrupted run
resumes, and a store with redacted columns is refused before anything is scored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from contender.clock import SystemClock
from contender.predictions.store import SqlPredictionStore
from contender.registry.loader import MlflowModelLoader
from contender.registry.promotion import MlflowRegistryEditor
from contender.replay.run import replay
from contender.replay.source import ReplaySource, Selection
from tests.integration import models
from tests.integration.conftest import MlflowServer, Registered, Service, ServiceFactory
from tests.integration.conftest import log_path_of as db_of
from tests.support import BIN, poll_until, run_cli

pytestmark = pytest.mark.integration

MODEL = "churn-replay"


@dataclass(frozen=True)
class Logged:
    service: Service
    frame: pd.DataFrame
    labels: np.ndarray
    third: LogisticRegression
    request_rows: dict[str, list[int]]
    """request id -> the frame's rows it sent."""


def _send(service: Service, frame: pd.DataFrame, labels: np.ndarray) -> dict[str, list[int]]:
    """One-row requests, and some of five rows; every row labeled through /feedback."""
    sent: dict[str, list[int]] = {}
    with httpx.Client(base_url=service.url, timeout=30) as client:
        start = 0
        while start < len(frame):
            size = 5 if start % 50 == 0 else 1
            rows = list(range(start, min(start + size, len(frame))))
            part = frame.iloc[rows]
            body = {
                "dataframe_split": {"columns": list(part.columns), "data": part.values.tolist()}
            }
            answer = client.post("/invocations", json=body)
            assert answer.status_code == 200, answer.text
            request_id = answer.headers["X-Request-ID"]
            sent[request_id] = rows
            label = [int(labels[i]) for i in rows]
            feedback = {"request_id": request_id, "label": label if size > 1 else label[0]}
            assert client.post("/feedback", json=feedback).status_code == 200
            start += size
    return sent


def _stored(service: Service, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_of(service)) as connection:
        return list(connection.execute(query))


@pytest.fixture(scope="module")
def logged(
    mlflow_server: MlflowServer, registered: Registered, start_service: ServiceFactory
) -> Logged:
    client: MlflowClient = mlflow_server.client
    trained = registered.trained
    models.register_pair(
        client, MODEL, trained.champion_uri, trained.challenger_uri, by_alias=False
    )
    frame, labels = models.make_data(seed=11)  # traffic the models were not trained on
    third = LogisticRegression(C=0.05, max_iter=500).fit(*models.make_data(seed=3))
    third_uri = models.log_sklearn(third, frame, "third")
    assert models.register(third_uri, MODEL) == "3"
    service = start_service("--model", MODEL, "--tracking-uri", mlflow_server.url)
    sent = _send(service, frame, labels)
    poll_until(
        lambda: (
            True
            if _stored(service, "SELECT count(*) FROM predictions")[0][0] == len(sent)
            else None
        ),
        timeout_s=30,
        what="every request logged",
    )
    return Logged(service, frame, labels, third, sent)


def _replay(logged: Logged, version: str, *extra: str) -> str:
    done = run_cli(
        [str(BIN / "contender"), "replay", "--model", MODEL, "--version", version,
         "--log-store", logged.service.log_store, "--tracking-uri", mlflow.get_tracking_uri(),
         *extra]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_replay_stores_the_versions_own_prediction_for_every_logged_record(
    logged: Logged,
) -> None:
    out = _replay(logged, "3")
    assert f"scored {len(logged.request_rows):,} records" in out, out
    replayed = _stored(
        logged.service,
        "SELECT request_id, predictions, error FROM replays WHERE version = '3'",
    )
    assert len(replayed) == len(logged.request_rows)
    for request_id, predictions, error in replayed:
        assert error is None
        rows = logged.frame.iloc[logged.request_rows[str(request_id)]]
        expected = logged.third.predict_proba(rows)
        np.testing.assert_allclose(json.loads(str(predictions)), expected, rtol=1e-9)

    again = _replay(logged, "3")
    assert "scored 0 records" in again
    assert f"{len(logged.request_rows):,} were already replayed" in again
    assert _stored(logged.service, "SELECT count(*) FROM replays")[0][0] == len(replayed)


def test_report_replay_compares_on_exactly_the_replayed_rows(
    logged: Logged, registered: Registered, tmp_path: Path
) -> None:
    _replay(logged, "3")
    done = run_cli(
        [str(BIN / "contender"), "report", "--model", MODEL, "--replay", "3", "--json",
         "--log-store", logged.service.log_store]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["replay"]["version"] == "3"
    assert report["replay"]["champion_version"] == "1"
    assert "offline batch" in report["replay"]["latency"]
    assert report["challenger"]["version"] == "3"
    assert report["n_labeled"] == len(logged.frame)
    assert report["guardrails"]["latency_p99_ratio"] is None  # not judged on a replay
    champion_scores = registered.trained.champion.predict_proba(logged.frame)[:, 1]
    third_scores = logged.third.predict_proba(logged.frame)[:, 1]
    assert abs(report["champion"]["auc"] - roc_auc_score(logged.labels, champion_scores)) < 0.005
    assert abs(report["challenger"]["auc"] - roc_auc_score(logged.labels, third_scores)) < 0.005
    page = tmp_path / "replay.html"
    terminal = run_cli(
        [str(BIN / "contender"), "report", "--model", MODEL, "--replay", "3",
         "--log-store", logged.service.log_store, "--html", str(page)]
    )  # fmt: skip
    assert terminal.returncode == 0, terminal.stderr
    assert "scored offline" in " ".join(terminal.stdout.split())
    assert "scored offline" in page.read_text()


def test_an_interrupted_replay_resumes_where_it_stopped(logged: Logged) -> None:
    url = mlflow.get_tracking_uri()
    ref = MlflowRegistryEditor(url).version(MODEL, "2")
    loaded = MlflowModelLoader(url, SystemClock())(ref)
    store = SqlPredictionStore(logged.service.log_store)
    source = ReplaySource(store.engine, Selection(MODEL, "2"))
    batches = 0

    def interrupt_after_two(_records: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(source, loaded, batch_rows=40, on_batch=interrupt_after_two)
    store.close()
    first = _stored(logged.service, "SELECT count(*) FROM replays WHERE version = '2'")[0][0]
    assert 0 < first < len(logged.request_rows)

    out = _replay(logged, "2")
    assert f"{first:,} were already replayed" in out
    ids = [
        row[0]
        for row in _stored(logged.service, "SELECT request_id FROM replays WHERE version = '2'")
    ]
    assert sorted(ids) == sorted(logged.request_rows)


@pytest.fixture
def redacted_service(
    mlflow_server: MlflowServer, logged: Logged, start_service: ServiceFactory
) -> Iterator[Service]:
    service = start_service(
        "--model", MODEL, "--tracking-uri", mlflow_server.url, "--redact", "f1,f3",
        env={"CONTENDER_REDACT_KEY": "k" * 32},
    )  # fmt: skip
    _send(service, logged.frame.head(20), logged.labels[:20])
    yield service
    service.stop()


def test_replay_refuses_redacted_columns_and_names_them(redacted_service: Service) -> None:
    poll_until(
        lambda: (
            True
            if _stored(redacted_service, "SELECT count(*) FROM predictions")[0][0] > 0
            else None
        ),
        timeout_s=30,
        what="records logged",
    )
    done = run_cli(
        [str(BIN / "contender"), "replay", "--model", MODEL, "--version", "3",
         "--log-store", redacted_service.log_store, "--tracking-uri", mlflow.get_tracking_uri()]
    )  # fmt: skip
    assert done.returncode == 1
    assert "redacted columns (f1, f3)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert _stored(redacted_service, "SELECT count(*) FROM replays")[0][0] == 0
