"""Session fixtures: one real `mlflow server`, real registered models, real services."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contender.registry.routing_tag import ROUTING_TAG
from tests.integration import models
from tests.support import BIN, Process, free_port, wait_http_ok

STAGES_MODEL = "churn-stages"
ALIASES_MODEL = "churn-aliases"
FLAKY_MODEL = "churn-flaky-challenger"
SLOW_MODEL = "churn-slow-challenger"
COSTLY_MODEL = "churn-costly-challenger"
HALF_FAILING_MODEL = "churn-half-failing-challenger"


@dataclass(frozen=True)
class MlflowServer:
    url: str
    client: MlflowClient


def start_mlflow_server(root: Path, port: int, log_name: str = "server.log") -> Process:
    """`mlflow server` on `port`, its store and artifacts under `root`: the same `root` and
    `port` again restart the same registry. Not waited for: see `wait_mlflow_ready`."""
    return Process(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        root / log_name,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )


def wait_mlflow_ready(url: str, server: Process) -> None:
    # 15-30 s on this machine; more when other processes are busy.
    wait_http_ok(f"{url}/health", server, timeout_s=180)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    server = start_mlflow_server(root, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_mlflow_ready(url, server)
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(url)
        yield MlflowServer(url, MlflowClient(url))
        mlflow.set_tracking_uri(previous)
    finally:
        server.stop()


@dataclass(frozen=True)
class Registered:
    trained: models.TrainedModels
    versions: dict[str, tuple[str, str]]
    """Registered model name -> (champion version, challenger version)."""


@pytest.fixture(scope="session")
def registered(mlflow_server: MlflowServer) -> Registered:
    client = mlflow_server.client
    trained = models.train_and_log("contender-tests")
    pair = (trained.champion_uri, trained.challenger_uri)
    raising_uri = models.log_code_model("raising_model.py", trained.rows)
    slow_uri = models.log_code_model("slow_model.py", trained.rows)
    costly_uri = models.log_code_model("costly_model.py", trained.rows)
    half_failing_uri = models.log_code_model("half_failing_model.py", trained.rows)
    versions = {
        STAGES_MODEL: models.register_pair(client, STAGES_MODEL, *pair, by_alias=False),
        ALIASES_MODEL: models.register_pair(client, ALIASES_MODEL, *pair, by_alias=True),
        FLAKY_MODEL: models.register_pair(
            client, FLAKY_MODEL, trained.champion_uri, raising_uri, by_alias=False
        ),
        SLOW_MODEL: models.register_pair(
            client, SLOW_MODEL, trained.champion_uri, slow_uri, by_alias=False
        ),
        COSTLY_MODEL: models.register_pair(
            client, COSTLY_MODEL, trained.champion_uri, costly_uri, by_alias=False
        ),
        HALF_FAILING_MODEL: models.register_pair(
            client, HALF_FAILING_MODEL, trained.champion_uri, half_failing_uri, by_alias=False
        ),
    }
    return Registered(trained, versions)


@dataclass
class Service:
    url: str
    process: Process
    log_store: str

    def stop(self) -> int:
        return self.process.stop()


ServiceFactory = Callable[..., Service]


@pytest.fixture(scope="session")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceFactory]:
    """Start `contender serve` as a subprocess on a free port; stopped at session end."""
    started: list[Service] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Service:
        root = tmp_path_factory.mktemp("service")
        port = free_port()
        log_store = f"sqlite:///{root}/log.db"
        command = [str(BIN / "contender"), "serve", "--port", str(port), "--log-store", log_store]
        process = Process([*command, *args], root / "service.log", env=env)
        service = Service(f"http://127.0.0.1:{port}", process, log_store)
        started.append(service)
        wait_http_ok(f"{service.url}/{'ready' if ready else 'ping'}", process, timeout_s=120)
        return service

    yield start
    for service in started:
        service.stop()


def log_path_of(service: Service) -> Path:
    return Path(service.log_store.removeprefix("sqlite:///"))


@pytest.fixture(scope="session")
def mlflow_url(mlflow_server: MlflowServer) -> str:
    return mlflow_server.url


@pytest.fixture
def forget_routing_tags(mlflow_server: MlflowServer, registered: Registered) -> Iterator[None]:
    """A test that writes the routing tag removes it: the models are shared by the session."""
    yield
    for name in registered.versions:
        with contextlib.suppress(MlflowException):
            mlflow_server.client.delete_registered_model_tag(name, ROUTING_TAG)
