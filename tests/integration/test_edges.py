"""Bad input, no champion, a local sqlite registry, graceful stop, export."""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
import signal

import httpx2 as httpx
import pytest

from contender.jsonio import dumps
from tests.integration import models
from tests.integration.conftest import (
    STAGES_MODEL,
    MlflowServer,
    Registered,
    Service,
    ServiceFactory,
    log_path_of,
)
from tests.integration.test_serving import send_all, split_body, stored_records
from tests.support import BIN, run_cli

pytestmark = pytest.mark.integration

REDACT_KEY = "integration-tests-redact-key"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def strict(start_service: ServiceFactory, registered: Registered, mlflow_url: str) -> Service:
    return start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url,
        "--max-rows", "5", "--max-body-bytes", "4096", "--redact", "f1",
        env={"CONTENDER_REDACT_KEY": REDACT_KEY},
    )  # fmt: skip


def post(url: str, content: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return httpx.post(f"{url}/invocations", content=content, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "names"),
    [
        (b"{not json", "application/json", 400, "JSON"),
        (b'{"dataframe_split": {"columns": ["f0", "f1", "f2"], "data": [[1, 2, 3]]}}',
         "application/json", 400, "f3"),
        (b'{"dataframe_records": [{"f0": "x", "f1": 1, "f2": 1, "f3": 1}]}',
         "application/json", 400, "f0"),
        (b'{"rows": []}', "application/json", 400, "dataframe_split"),
        (b"<xml/>", "application/xml", 415, "application/xml"),
        (b"{}", None, 415, "Content-Type"),
        (json.dumps({"dataframe_records": [{"f0": 1, "f1": 1, "f2": 1, "f3": 1}] * 6}).encode(),
         "application/json", 413, "--max-rows"),
        (b" " * 5000, "application/json", 413, "--max-body-bytes"),
        # Driven by the model's signature (four required doubles):
        (b'{"dataframe_split": {"columns": ["f0","f1","f2","f3","f0"], "data": [[1,2,3,4,5]]}}',
         "application/json", 400, "duplicate column names: f0"),
        (b'{"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [[1, null, 3, 4]]}}',
         "application/json", 400, "column 'f1'"),
        (b'{"dataframe_records": [{"f0": 1, "f1": 2, "f2": "NaN", "f3": 4}]}',
         "application/json", 400, "column 'f2'"),
        (b'{"instances": [{"f0": 1, "f1": 2, "f2": 3, "f3": "1e999"}]}',
         "application/json", 400, "column 'f3'"),
        (b'{"inputs": {"f0": [1, 2], "f1": [2, 2], "f2": [3, 3], "f3": [4, "-Infinity"]}}',
         "application/json", 400, "row 1 has -Infinity"),
        (b'{"instances": {"f0": [[1]], "f1": [2], "f2": [3], "f3": [4]}}',
         "application/json", 400, "column 'f0'"),
        (b"f0,f1,f2,f3\n1,2,,4\n", "text/csv", 400, "column 'f2'"),
        (b"f0,f1,f2,f3\nnan,2,3,4\n", "text/csv", 400, "column 'f0'"),
        (b'{"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": []}}',
         "application/json", 400, "no rows"),
        (b'{"inputs": {"f0": [], "f1": [], "f2": [], "f3": []}}',
         "application/json", 400, "no rows"),
        (b"f0,f1,f2,f3\n", "text/csv", 400, "no rows"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_json_error_that_names_the_problem(
    strict: Service, content: bytes, content_type: str | None, status: int, names: str
) -> None:
    response = post(strict.url, content, content_type)
    assert response.status_code == status, response.text
    document = response.json()
    assert set(document) == {"error_code", "message"}
    assert names in document["message"]
    assert "Traceback" not in response.text
    # ... and the service goes on serving.
    good = post(strict.url, b'{"dataframe_records": [{"f0": 1, "f1": 2, "f2": 3, "f3": 4}]}')
    assert good.status_code == 200


def test_objects_of_columns_answer_as_in_mlflow(strict: Service) -> None:
    # `mlflow models serve` reads a dict of columns for `instances` and `inputs` alike.
    for key in ("instances", "inputs"):
        body = json.dumps({key: {"f0": [1, 5], "f1": [2, 6], "f2": [3, 7], "f3": [4, 8]}})
        response = post(strict.url, body.encode())
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 2


def test_a_refusal_leaves_the_connection_fit_for_the_next_request(strict: Service) -> None:
    good = b'{"dataframe_records": [{"f0": 1, "f1": 2, "f2": 3, "f3": 4}]}'
    bad = [
        (b'{"dataframe_records": [{"f0": null, "f1": 2, "f2": 3, "f3": 4}]}', "application/json"),
        (b"{not json", "application/json"),
        (b"<xml/>", "application/xml"),
        (b" " * 5000, "application/json"),  # refused before the body is read
        (b'{"dataframe_split": {"columns": ["f0"], "data": []}}', "application/json"),
    ]
    with httpx.Client(base_url=strict.url, timeout=30) as client:

        def address(response: httpx.Response) -> object:
            return response.extensions["network_stream"].get_extra_info("client_addr")

        first = client.post("/invocations", content=good, headers=JSON)
        connection = address(first)
        for content, content_type in bad:
            refusal = client.post(
                "/invocations", content=content, headers={"Content-Type": content_type}
            )
            assert 400 <= refusal.status_code < 500
            assert address(refusal) == connection, "a refusal closed the connection"
            answer = client.post("/invocations", content=good, headers=JSON)
            assert answer.status_code == 200, answer.text
            assert address(answer) == connection


def test_redacted_columns_are_stored_as_keyed_hashes_only(strict: Service) -> None:
    secret = 987.654321
    body = json.dumps({"dataframe_records": [{"f0": 1.5, "f1": secret, "f2": 3, "f3": 4}]})
    request_id = post(strict.url, body.encode()).json()["request_id"]
    record = stored_records(strict, 1, frozenset({request_id}))[request_id]
    assert record["inputs"]["columns"] == ["f0", "f1", "f2", "f3"]
    f0, f1, *_ = record["inputs"]["data"][0]
    assert f0 == 1.5
    expected = hmac.new(REDACT_KEY.encode(), dumps(secret), hashlib.sha256).hexdigest()
    assert f1 == f"hmac-sha256:{expected}"
    # Nowhere in clear: not in the store's files (the WAL included), not in an export.
    clear = str(secret).encode()
    database = log_path_of(strict)
    for path in database.parent.glob(f"{database.name}*"):
        assert clear not in path.read_bytes(), path
    for form in ("jsonl", "csv"):
        exported = run_cli(
            [str(BIN / "contender"), "log", "export", "--log-store", strict.log_store,
             "--format", form],
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        assert request_id in exported.stdout
        assert expected in exported.stdout
        assert str(secret) not in exported.stdout + exported.stderr
    assert str(secret) not in strict.process.output()


def test_serve_refuses_redact_without_a_key(mlflow_url: str) -> None:
    result = run_cli(
        [str(BIN / "contender"), "serve", "--model", STAGES_MODEL, "--tracking-uri", mlflow_url,
         "--redact", "f1"],
        timeout_s=60,
    )  # fmt: skip
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "--redact: needs CONTENDER_REDACT_KEY" in output
    assert "Traceback" not in output


def test_status_version_metrics(strict: Service, registered: Registered) -> None:
    status = httpx.get(f"{strict.url}/status").json()
    assert status["model"] == STAGES_MODEL
    assert status["selector"] == "stages"
    assert status["testing"] is True
    assert status["challenger_weight"] == 0.1
    assert status["champion"]["version"] == registered.versions[STAGES_MODEL][0]
    assert set(status["champion"]) == {
        "version", "run_id", "source", "loaded_at", "requirements_mismatch",
    }  # fmt: skip
    assert status["champion"]["requirements_mismatch"] == []
    assert status["last_poll_error"] is None
    assert status["last_poll_at"] is not None
    versions = httpx.get(f"{strict.url}/version").json()
    assert versions["mlflow"] == "3.17.2"
    assert httpx.get(f"{strict.url}/ping").status_code == 200
    assert httpx.get(f"{strict.url}/health").status_code == 200
    one_row = split_body(registered.trained.rows.iloc[[0]])
    assert httpx.post(f"{strict.url}/invocations", json=one_row).status_code == 200
    metrics = httpx.get(f"{strict.url}/metrics").text
    for name in (
        "contender_requests_total", "contender_model_latency_seconds_bucket",
        "contender_log_queue_depth", "contender_reloads_total", "contender_fallbacks_total",
    ):  # fmt: skip
        assert name in metrics


def test_no_champion_answers_503(start_service: ServiceFactory, mlflow_url: str) -> None:
    service = start_service("--model", "no-such-model", "--tracking-uri", mlflow_url, ready=False)
    ready = httpx.get(f"{service.url}/ready")
    assert ready.status_code == 503
    response = post(service.url, b'{"dataframe_records": [{"f0": 1}]}')
    assert response.status_code == 503
    assert "no champion" in response.json()["message"]


@pytest.fixture(scope="module")
def sqlite_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A local `sqlite:///` tracking store with one model whose `@champion` is set."""
    with models.local_sqlite_registry(tmp_path_factory.mktemp("registry"), seed=3) as local:
        version = models.register(local.model_uri, "local-model")
        local.client.set_registered_model_alias("local-model", "champion", version)
    return local.uri, version


def test_a_local_sqlite_registry_serves(
    start_service: ServiceFactory, sqlite_registry: tuple[str, str]
) -> None:
    uri, version = sqlite_registry
    service = start_service(
        "--model", "local-model", "--tracking-uri", uri, "--selector", "aliases"
    )
    rows, _ = models.make_data(seed=3)
    response = httpx.post(f"{service.url}/invocations", json=split_body(rows.head(4)))
    assert response.status_code == 200
    assert response.json()["model_version"] == version
    assert response.json()["served_by"] == "champion"


def test_sigterm_flushes_every_acknowledged_record(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    service = start_service("--model", STAGES_MODEL, "--tracking-uri", mlflow_url)
    rows = registered.trained.rows
    responses = send_all(service.url, [split_body(rows.iloc[[i % 50]]) for i in range(400)])
    acknowledged = {r.json()["request_id"] for r in responses if r.status_code == 200}
    # uvicorn re-raises the signal once its graceful shutdown is done.
    assert service.process.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in service.process.output()
    assert set(stored_records(service, len(acknowledged))) == acknowledged


def test_a_model_logged_with_unmet_requirements_is_flagged_at_load(
    start_service: ServiceFactory, mlflow_server: MlflowServer, registered: Registered
) -> None:
    """As `mlflow models serve --env-manager local` warns: served, but named in /status
    and the service log with the versions it wants and the ones installed."""
    wanted = [*models.PYFUNC_REQUIREMENTS, "scikit-learn==0.20.3", "contender-no-such-pkg==1.0"]
    uri = models.log_code_model("constant_model.py", registered.trained.rows, requirements=wanted)
    name = "churn-unmet-requirements"
    version = models.register(uri, name)
    models.set_stage(mlflow_server.client, name, version, "Production")
    service = start_service("--model", name, "--tracking-uri", mlflow_server.url)
    flagged = httpx.get(f"{service.url}/status").json()["champion"]["requirements_mismatch"]
    installed = importlib.metadata.version("scikit-learn")
    assert flagged == [
        f"scikit-learn (current: {installed}, required: scikit-learn==0.20.3)",
        "contender-no-such-pkg (current: uninstalled, required: contender-no-such-pkg==1.0)",
    ]
    answer = httpx.post(f"{service.url}/invocations", json=split_body(registered.trained.rows))
    assert answer.status_code == 200
    log = service.process.output()
    assert "contender-no-such-pkg (current: uninstalled" in log
    assert "scikit-learn==0.20.3" in log
