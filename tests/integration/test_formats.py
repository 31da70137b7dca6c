"""The same request in every input format answers as `mlflow models serve` does."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pandas as pd
import pytest

from tests.integration.conftest import (
    ALIASES_MODEL,
    STAGES_MODEL,
    MlflowServer,
    Registered,
    Service,
    ServiceFactory,
)
from tests.support import BIN, Process, free_port, run_cli, wait_http_ok

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mlflow_serve(
    mlflow_server: MlflowServer, registered: Registered, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    process = Process(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{STAGES_MODEL}/1",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        tmp_path_factory.mktemp("mlflow-serve") / "serve.log",
        # mlflow models serve runs `uvicorn` from PATH.
        env={"MLFLOW_TRACKING_URI": mlflow_server.url, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/ping", process, timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def champion_only(start_service: ServiceFactory, mlflow_url: str) -> Service:
    return start_service("--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--no-testing")


def formats(rows: Any) -> dict[str, tuple[str, bytes]]:
    """Each input format of the scoring protocol: (content type, body)."""
    records = rows.to_dict(orient="records")
    documents = {
        "dataframe_split": {"dataframe_split": rows.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {column: rows[column].tolist() for column in rows}},
    }
    bodies = {
        name: ("application/json", json.dumps(doc).encode()) for name, doc in documents.items()
    }
    return {**bodies, "csv": ("text/csv", rows.to_csv(index=False).encode())}


@pytest.mark.parametrize(
    "name", ["dataframe_split", "dataframe_records", "instances", "inputs", "csv"]
)
def test_every_format_answers_like_mlflow_models_serve(
    name: str, champion_only: Service, mlflow_serve: str, registered: Registered
) -> None:
    rows = registered.trained.rows.head(7)
    content_type, body = formats(rows)[name]
    answers = []
    for url in (champion_only.url, mlflow_serve):
        response = httpx.post(
            f"{url}/invocations", content=body, headers={"Content-Type": content_type}, timeout=30
        )
        assert response.status_code == 200, response.text
        answers.append(response.json()["predictions"])
    ours, theirs = answers
    assert ours == theirs
    assert len(ours) == 7


def test_params_are_accepted_like_mlflow(champion_only: Service, registered: Registered) -> None:
    rows = registered.trained.rows.head(2)
    body = {"dataframe_split": rows.to_dict(orient="split"), "params": {}}
    response = httpx.post(f"{champion_only.url}/invocations", json=body, timeout=30)
    assert response.status_code == 200, response.text


def test_aliases_select_champion_and_challenger(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    service = start_service(
        "--model", ALIASES_MODEL, "--selector", "aliases", "--tracking-uri", mlflow_url,
        "--challenger-weight", "1.0",
    )  # fmt: skip
    status = httpx.get(f"{service.url}/status").json()
    champion_version, challenger_version = registered.versions[ALIASES_MODEL]
    assert status["selector"] == "aliases"
    assert status["champion"]["version"] == champion_version
    assert status["challenger"]["version"] == challenger_version
    rows = registered.trained.rows.head(3)
    response = httpx.post(
        f"{service.url}/invocations", json={"dataframe_split": rows.to_dict(orient="split")}
    )
    assert response.json()["served_by"] == "challenger"
    expected = registered.trained.expected(registered.trained.challenger, rows)
    for ours, theirs in zip(response.json()["predictions"], expected, strict=True):
        assert ours == pytest.approx(theirs)


# ---- clients someone else wrote: MLflow's own ----------------------------------------


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def test_mlflow_scoring_server_client_gets_what_mlflow_serve_gives(
    mlflow_serve: str, champion_only: Service, registered: Registered
) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    rows = registered.trained.rows.iloc[:40]
    answers = {}
    for name, url in (("mlflow", mlflow_serve), ("contender", champion_only.url)):
        client = ScoringServerClient(*host_port(url))  # type: ignore[no-untyped-call]
        client.wait_server_ready(timeout=30)  # type: ignore[no-untyped-call]
        answers[name] = [
            client.invoke(data).get_predictions()
            for data in (rows, rows.iloc[[0]], rows.iloc[10:15])
        ]
    for theirs, ours in zip(answers["mlflow"], answers["contender"], strict=True):
        pd.testing.assert_frame_equal(ours, theirs)


def test_mlflow_models_predict_and_contender_agree(
    mlflow_server: MlflowServer, champion_only: Service, registered: Registered, tmp_path: Path
) -> None:
    """`mlflow models predict` scores an input file locally; the same file posted to
    contender gets the same predictions."""
    rows = registered.trained.rows.iloc[:25]
    source = tmp_path / "input.json"
    source.write_text(json.dumps({"dataframe_split": rows.to_dict(orient="split")}))
    output = tmp_path / "output.json"
    predicted = run_cli(
        [
            str(BIN / "mlflow"), "models", "predict", "-m", f"models:/{STAGES_MODEL}/1",
            "-i", str(source), "-o", str(output), "--content-type", "json",
            "--env-manager", "local",
        ],
        timeout_s=300,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    theirs = json.loads(output.read_text())
    ours = httpx.post(
        f"{champion_only.url}/invocations",
        content=source.read_bytes(),
        headers={"Content-Type": "application/json"},
    ).json()
    assert ours["predictions"] == theirs["predictions"]
