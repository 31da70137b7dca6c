"""Hot reload and zero-downtime promotion, against a real `mlflow server` (SPEC 2, 3, 5).

Every step is observed by polling `/status` with a deadline of one poll interval plus a
model load (generous: the machine has two cores and traffic runs meanwhile); nothing
waits on a fixed sleep.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx2 as httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from contender.cli.main import app
from contender.predictions.record import Feedback
from tests.integration import models
from tests.integration.conftest import (
    STAGES_MODEL,
    MlflowServer,
    Registered,
    Service,
    ServiceFactory,
    start_mlflow_server,
    wait_mlflow_ready,
)
from tests.support import BIN, free_port, poll_until, run_cli
from tests.unit.analysis.factories import classifier_data, record, sqlite_store

pytestmark = pytest.mark.integration

POLL_INTERVAL_S = 1.0
SWAP_DEADLINE_S = POLL_INTERVAL_S + 20.0
"""One poll plus download, load and warm-up of a tiny model, on a busy two-core machine."""
ONE_ROW = {"dataframe_split": {"columns": models.FEATURES, "data": [[0.1, -0.4, 1.2, 0.3]]}}
TOKEN = "hot-reload-token"


# ---- helpers -------------------------------------------------------------------------


def status(service: Service) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{service.url}/status", timeout=10).json()
    return document


def wait_status(
    service: Service,
    condition: Callable[[dict[str, Any]], bool],
    what: str,
    timeout_s: float = SWAP_DEADLINE_S,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        document = status(service)
        return document if condition(document) else None

    return poll_until(check, timeout_s=timeout_s, interval_s=0.1, what=what)


def version_in(slot: str, version: str | None) -> Callable[[dict[str, Any]], bool]:
    def condition(document: dict[str, Any]) -> bool:
        served = document[slot]
        return (served["version"] if served else None) == version

    return condition


def failed_attempts(document: dict[str, Any], slot: str, version: str) -> int:
    return max(
        (
            event["attempt"]
            for event in document["reloads"]
            if (event["slot"], event["new_version"], event["outcome"]) == (slot, version, "failed")
        ),
        default=0,
    )


def runs(values: Iterable[str | None]) -> list[str | None]:
    """Consecutive duplicates collapsed: [1, 1, 3, 3, 1] -> [1, 3, 1]."""
    collapsed: list[str | None] = []
    for value in values:
        if not collapsed or collapsed[-1] != value:
            collapsed.append(value)
    return collapsed


@dataclass(frozen=True)
class Reply:
    client: int
    status: int
    served_by: str | None
    version: str | None


class Traffic:
    """One-row requests from background clients, each sending one request at a time, until
    stopped, `max_requests` in all, or `max_seconds`: whichever comes first."""

    def __init__(
        self,
        url: str,
        clients: int = 2,
        max_requests: int = 40_000,
        max_seconds: float = 150.0,
        pause_s: float = 0.02,
    ) -> None:
        self.replies: list[Reply] = []
        self._url = url
        self._limits = (max_requests, max_seconds, pause_s)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(index,), daemon=True)
            for index in range(clients)
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        self.wait_for_more(10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    @property
    def count(self) -> int:
        return len(self.replies)

    def wait_for_more(self, n: int) -> None:
        """Until `n` more replies have come: traffic kept flowing up to this point."""
        target = self.count + n
        poll_until(
            lambda: True if self.count >= target else None,
            timeout_s=30,
            what=f"{n} more replies (traffic stopped at {self.count})",
        )

    def _client(self, index: int) -> None:
        max_requests, max_seconds, pause_s = self._limits
        deadline = time.monotonic() + max_seconds
        with httpx.Client(base_url=self._url, timeout=30.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self.count >= max_requests:
                    return
                self.replies.append(self._send(client, index))
                self._stop.wait(pause_s)

    @staticmethod
    def _send(client: httpx.Client, index: int) -> Reply:
        try:
            response = client.post("/invocations", json=ONE_ROW)
        except httpx.HTTPError:
            return Reply(index, 0, None, None)
        if response.status_code != 200:
            return Reply(index, response.status_code, None, None)
        document = response.json()
        return Reply(index, 200, document["served_by"], document["model_version"])

    def by_client(self, served_by: str) -> list[list[str | None]]:
        clients = sorted({reply.client for reply in self.replies})
        return [
            runs(r.version for r in self.replies if r.client == c and r.served_by == served_by)
            for c in clients
        ]


def contender(*args: str) -> str:
    """Run the `contender` CLI as a subprocess; its stdout, after checking it succeeded."""
    result = run_cli([str(BIN / "contender"), *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---- hot reload through a whole promotion cycle --------------------------------------


class Slots:
    """Registry moves for one selector, done the way a user of MLflow would."""

    def __init__(self, client: MlflowClient, name: str, selector: str) -> None:
        self.client, self.name, self.selector = client, name, selector

    def register_pair(self, champion_uri: str, challenger_uri: str) -> None:
        models.register_pair(
            self.client, self.name, champion_uri, challenger_uri, self.selector == "aliases"
        )

    def stage_challenger(self, version: str) -> None:
        if self.selector == "aliases":
            self.client.set_registered_model_alias(self.name, "challenger", version)
        else:
            self.client.transition_model_version_stage(
                self.name, version, "Staging", archive_existing_versions=True
            )

    def describe(self) -> dict[str, str]:
        """Aliases -> version, or version -> stage."""
        if self.selector == "aliases":
            return dict(self.client.get_registered_model(self.name).aliases)
        found = self.client.search_model_versions(f"name = '{self.name}'")
        return {str(version.version): str(version.current_stage) for version in found}


@pytest.mark.parametrize("selector", ["stages", "aliases"])
def test_promotion_and_rollback_under_traffic(
    selector: str,
    start_service: ServiceFactory,
    registered: Registered,
    mlflow_server: MlflowServer,
) -> None:
    trained = registered.trained
    slots = Slots(mlflow_server.client, f"hot-reload-{selector}", selector)
    slots.register_pair(trained.champion_uri, trained.challenger_uri)
    url = mlflow_server.url
    where = ("--model", slots.name, "--tracking-uri", url, "--selector", selector)
    service = start_service(
        *where, "--poll-interval", str(POLL_INTERVAL_S), "--challenger-weight", "0.5"
    )
    first = status(service)
    assert (first["champion"]["version"], first["challenger"]["version"]) == ("1", "2")

    with Traffic(service.url) as traffic:
        traffic.wait_for_more(40)  # both clients see both arms of the first phase
        # A new challenger: loaded off the request path, then swapped in.
        slots.stage_challenger(models.register(trained.challenger_uri, slots.name))
        staged = wait_status(service, version_in("challenger", "3"), "challenger 3")
        assert staged["champion"]["version"] == "1"
        downloads = staged["downloads"]
        traffic.wait_for_more(50)

        # Promotion: the loaded challenger becomes the champion without a new download.
        output = contender("promote", *where, "--force")
        assert "Promoted hot-reload" in output
        assert "version 3" in output
        promoted = wait_status(
            service,
            lambda d: version_in("champion", "3")(d) and version_in("challenger", None)(d),
            "champion 3, no challenger",
        )
        assert promoted["downloads"] == downloads
        moves = [(e["slot"], e["new_version"], e["outcome"]) for e in promoted["reloads"]]
        assert ("champion", "3", "reused") in moves
        assert ("champion", "3", "loaded") not in moves
        if selector == "aliases":
            assert slots.describe() == {"champion": "3"}
        else:
            assert slots.describe() == {"1": "Archived", "2": "Archived", "3": "Production"}
        traffic.wait_for_more(50)

        # Rollback: version 1 is the champion again (downloaded again: it had been dropped).
        output = contender("rollback", *where, "--to", "1")
        assert "Rolled back" in output
        rolled_back = wait_status(service, version_in("champion", "1"), "champion 1 again")
        assert rolled_back["challenger"] is None
        assert rolled_back["downloads"] == downloads + 1
        assert rolled_back["last_poll_error"] is None
        assert rolled_back["load_errors"] == {}
        if selector == "aliases":
            assert slots.describe() == {"champion": "1"}
        else:
            assert slots.describe() == {"1": "Production", "2": "Archived", "3": "Archived"}
        traffic.wait_for_more(50)
    service.stop()  # now, not at the session's end: two idle cores make the rest faster

    failures = [reply for reply in traffic.replies if reply.status != 200]
    assert failures == [], f"{len(failures)} of {traffic.count} requests failed"
    # Each client sends one request at a time, so its answers are in time order: every
    # phase was answered, and each swap shows as one clean switch, never a flip back.
    for champion_runs in traffic.by_client("champion"):
        assert champion_runs == ["1", "3", "1"]
    for challenger_runs in traffic.by_client("challenger"):
        assert challenger_runs == ["2", "3"]


# ---- a broken version ----------------------------------------------------------------


def test_a_broken_version_never_replaces_the_good_one(
    start_service: ServiceFactory, registered: Registered, mlflow_server: MlflowServer
) -> None:
    trained, client, name = registered.trained, mlflow_server.client, "hot-reload-broken"
    good_champion, good_challenger = models.register_pair(
        client, name, trained.champion_uri, trained.challenger_uri, by_alias=False
    )
    mlflow.set_experiment("contender-tests")
    broken = models.register(models.log_code_model("broken_load_model.py", trained.rows), name)
    service = start_service(
        "--model", name, "--tracking-uri", mlflow_server.url,
        "--poll-interval", str(POLL_INTERVAL_S), "--challenger-weight", "0.5",
    )  # fmt: skip

    def serves(champion: str, challenger: str) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            replies = [http.post("/invocations", json=ONE_ROW) for _ in range(40)]
        assert {reply.status_code for reply in replies} == {200}
        served = {(r.json()["served_by"], r.json()["model_version"]) for r in replies}
        assert served == {("champion", champion), ("challenger", challenger)}

    models.set_stage(client, name, broken, "Staging")
    failing = wait_status(service, lambda d: "challenger" in d["load_errors"], "a load error")
    message = failing["load_errors"]["challenger"]
    assert f"version {broken} failed to load" in message
    assert "this artifact is broken" in message
    assert failing["challenger"]["version"] == good_challenger
    serves(good_champion, good_challenger)
    # Retried at every poll: the attempt count grows.
    wait_status(service, lambda d: failed_attempts(d, "challenger", broken) >= 3, "3 attempts")

    # In Production (every other Production version archived) it is the champion's turn.
    models.set_stage(client, name, broken, "Production")
    failing = wait_status(service, lambda d: "champion" in d["load_errors"], "champion error")
    assert f"version {broken} failed to load" in failing["load_errors"]["champion"]
    assert failing["champion"]["version"] == good_champion
    assert httpx.get(f"{service.url}/ready").status_code == 200
    serves(good_champion, good_challenger)
    wait_status(service, lambda d: failed_attempts(d, "champion", broken) >= 2, "2 attempts")
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'contender_reloads_total{outcome="failed",slot="champion"}' in metrics
    service.stop()


# ---- the registry goes away and comes back -------------------------------------------


def register_one_champion(tracking_uri: str, name: str) -> str:
    """A fresh LogisticRegression as version 1, in Production, on another server."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = MlflowClient(tracking_uri)
        experiment = client.create_experiment("outage")
        frame, labels = models.make_data(seed=11)
        estimator = LogisticRegression(max_iter=300).fit(frame, labels)
        uri = models.log_sklearn(estimator, frame, "model", experiment_id=experiment)
        version = models.register(uri, name)
        models.set_stage(client, name, version, "Production")
        return version
    finally:
        # set_tracking_uri also sets MLFLOW_TRACKING_URI, which later subprocesses inherit.
        mlflow.set_tracking_uri(previous)


def test_an_unreachable_registry_never_stops_serving(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    outage_s = 10.0
    root, port = tmp_path / "registry", free_port()
    root.mkdir()
    url = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(root, port)
    try:
        wait_mlflow_ready(url, server)
        version = register_one_champion(url, "outage-model")
        service = start_service(
            "--model", "outage-model", "--tracking-uri", url,
            "--poll-interval", str(POLL_INTERVAL_S),
        )  # fmt: skip
        with Traffic(service.url, max_seconds=400) as traffic:
            stopped_at = time.monotonic()
            server.stop()
            down = wait_status(service, lambda d: d["last_poll_error"] is not None, "poll error")
            assert f"127.0.0.1:{port}" in down["last_poll_error"]
            assert down["champion"]["version"] == version
            replies_at_stop = traffic.count
            # Restarted only after `outage_s`: a restart once came back in under 5 s, so
            # counting on its start-up time to fill the outage made it too short.
            while time.monotonic() - stopped_at < outage_s:
                assert status(service)["last_poll_error"] is not None
                traffic.wait_for_more(5)
            server = start_mlflow_server(root, port, "server-restarted.log")
            wait_mlflow_ready(url, server)
            outage_lasted_s = time.monotonic() - stopped_at
            replies_while_down = traffic.count - replies_at_stop
            back = wait_status(service, lambda d: d["last_poll_error"] is None, "recovery")
            assert back["last_poll_at"] > down["last_poll_at"]
            assert back["champion"]["version"] == version
            traffic.wait_for_more(20)
        service.stop()
    finally:
        server.stop()

    assert outage_lasted_s >= outage_s
    assert replies_while_down > 100
    failures = [reply for reply in traffic.replies if reply.status != 200]
    assert failures == [], f"{len(failures)} of {traffic.count} requests failed"
    assert {reply.version for reply in traffic.replies} == {version}


# ---- the admin endpoints -------------------------------------------------------------


@pytest.mark.usefixtures("forget_routing_tags")
def test_admin_endpoints_need_the_token_and_act_at_once(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    champion, challenger = registered.versions[STAGES_MODEL]
    where = ("--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--challenger-weight", "0")
    with ThreadPoolExecutor(2) as pool:  # both start at once: half the wait
        starting = [
            pool.submit(start_service, *where, env={"CONTENDER_ADMIN_TOKEN": token})
            for token in ("", TOKEN)
        ]
        closed, guarded = (future.result() for future in starting)
    calls = (("POST", "/admin/reload", None), ("PUT", "/admin/routing", {"testing": True}))
    right = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": "Bearer nope"}
    for method, path, body in calls:
        for headers in ({}, right):
            answer = httpx.request(method, closed.url + path, json=body, headers=headers)
            assert answer.status_code == 403, (path, answer.text)
        for headers in ({}, wrong, {"Authorization": TOKEN}):
            answer = httpx.request(method, guarded.url + path, json=body, headers=headers)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error_code"] == "UNAUTHORIZED"

    def served() -> set[tuple[str, str]]:
        with httpx.Client(base_url=guarded.url) as http:
            replies = [http.post("/invocations", json=ONE_ROW).json() for _ in range(30)]
        return {(reply["served_by"], reply["model_version"]) for reply in replies}

    assert served() == {("champion", champion)}
    change = httpx.put(
        f"{guarded.url}/admin/routing", json={"challenger_weight": 1.0}, headers=right
    )
    assert change.status_code == 200
    assert change.json() == {"challenger_weight": 1.0, "testing": True, "revision": 1}
    assert served() == {("challenger", challenger)}
    assert status(guarded)["challenger_weight"] == 1.0
    assert status(guarded)["routing_revision"] == 1
    change = httpx.put(f"{guarded.url}/admin/routing", json={"testing": False}, headers=right)
    assert change.json() == {"challenger_weight": 1.0, "testing": False, "revision": 2}
    assert served() == {("champion", champion)}

    reload = httpx.post(f"{guarded.url}/admin/reload", headers=right)
    assert reload.status_code == 200
    assert reload.json() == {
        "changed": False,
        "champion": champion,
        "challenger": challenger,
        "last_poll_error": None,
        "load_errors": {},
    }
    closed.stop()
    guarded.stop()


# ---- promote and rollback: refusals, the verdict, a local sqlite:/// registry --------


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """The in-process CLI bounds MLflow's HTTP retries in os.environ: undo that after."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def local_registry(tmp_path: Path) -> str:
    """A `sqlite:///` tracking store: version 1 in Production, version 2 in Staging."""
    with models.local_sqlite_registry(tmp_path, seed=5) as local:
        uri = local.model_uri
        models.register_pair(local.client, "local", uri, uri, by_alias=False)
    return local.uri


def verdict_store(path: Path, model: str, challenger_signal: float) -> str:
    """A prediction log whose report says `promote` (signal 1.4) or `keep` (0.2): 2,400
    requests, enough latencies for the p99 guardrail to pass."""
    data = classifier_data(2400, np.random.default_rng(40), 0.8, challenger_signal)
    records, feedback = [], []
    for i in range(2400):
        a, b = float(data.champion[i]), float(data.challenger[i])
        timestamp = f"2025-03-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00"
        records.append(record(f"q{i}", [[1 - a, a]], [[1 - b, b]], model=model,
                              timestamp=timestamp, latency_ms=(10.0, 10.0)))  # fmt: skip
        feedback.append(Feedback(f"q{i}", 0, int(data.labels[i])))
    return sqlite_store(path, records, feedback)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("restore_environ")
def test_promote_and_rollback_on_a_local_registry(local_registry: str, tmp_path: Path) -> None:
    where = ("--model", "local", "--tracking-uri", local_registry)
    client = MlflowClient(local_registry)

    def stages() -> dict[str, str]:
        found = client.search_model_versions("name = 'local'")
        return {str(version.version): str(version.current_stage) for version in found}

    missing = f"sqlite:///{tmp_path}/no-log.db"
    keep = verdict_store(tmp_path / "keep.db", "local", challenger_signal=0.2)
    better = verdict_store(tmp_path / "promote.db", "local", challenger_signal=1.4)
    refusals = [
        (("promote", *where, "--log-store", missing), "error: cannot read the report's verdict"),
        (("promote", *where, "--log-store", keep), "error: the report's verdict is 'keep'"),
        (("rollback", *where, "--to", "7"), "error: model 'local' has no version 7"),
        (("rollback", *where, "--to", "2"), "error: version 2 of 'local' is the challenger"),
        (
            ("promote", "--model", "nope", "--tracking-uri", local_registry, "--force"),
            "error: no registered model 'nope'",
        ),
    ]
    for args, message in refusals:
        code, _, stderr = cli(*args)
        assert code == 1, args
        assert stderr.startswith(message), stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
    assert stages() == {"1": "Production", "2": "Staging"}

    code, stdout, stderr = cli("promote", *where, "--log-store", better)
    assert code == 0, stderr
    assert "Promoted local version 2 (verdict promote: challenger is better" in stdout
    assert "version 2: Staging -> Production" in stdout
    assert "version 1: Production -> Archived" in stdout
    assert stages() == {"1": "Archived", "2": "Production"}

    code, _, stderr = cli("promote", *where, "--force")
    assert (code, stderr.strip()) == (
        1,
        "error: model 'local' has no challenger to promote (no version in Staging)",
    )

    code, stdout, stderr = cli("rollback", *where, "--to", "1")
    assert code == 0, stderr
    assert "version 1: Archived -> Production" in stdout
    assert stages() == {"1": "Production", "2": "Archived"}
    code, stdout, _ = cli("rollback", *where, "--to", "1")
    assert code == 0
    assert stdout.strip() == "Nothing to do: version 1 of local is already the champion."
