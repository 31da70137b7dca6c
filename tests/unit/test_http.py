"""The HTTP layer in-process: create_app over fakes, driven by Starlette's TestClient."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from starlette.testclient import TestClient

from contender.compose import build_services
from contender.http.app import create_app
from contender.settings import Settings
from tests.fakes import FakeClock, FakeLoader, FakeRegistryClient, ListStore, model_ref
from tests.support import poll_until

BODY = {"dataframe_split": {"columns": ["a", "b"], "data": [[0.25, 0.5]]}}


@dataclass
class App:
    client: TestClient
    store: ListStore
    registry: FakeRegistryClient


@pytest.fixture
def app() -> Iterator[App]:
    yield from make_app(admin_token="s3cret")


def make_app(admin_token: str | None = None, champion: bool = True) -> Iterator[App]:
    ids = itertools.count()
    registry = FakeRegistryClient(model_ref("m", "1") if champion else None, model_ref("m", "2"))
    store = ListStore()
    settings = Settings(model="m", admin_token=admin_token, challenger_weight=0.0)
    services = build_services(
        settings, clock=FakeClock(), rng=random.Random(1), registry_client=registry,
        loader=FakeLoader(), store=store, new_request_id=lambda: f"req-{next(ids)}",
    )  # fmt: skip
    with TestClient(create_app(services)) as client:
        yield App(client, store, registry)


def test_a_prediction_and_its_record() -> None:
    for app in make_app():
        response = app.client.post("/invocations", json=BODY, headers={"X-Request-ID": "abc"})
        assert response.status_code == 200
        assert response.json() == {
            "predictions": [[0.25, 0.75]],
            "request_id": "abc",
            "served_by": "champion",
            "model_version": "1",
        }
        assert response.headers["X-Served-By"] == "champion"
        assert response.headers["X-Model-Version"] == "1"
        generated = app.client.post("/invocations", json=BODY).headers["X-Request-ID"]
        assert generated.startswith("req-")
    # The app has stopped gracefully: every answered request's record is in the store.
    assert [record.request_id for record in app.store.records] == ["abc", generated]
    assert app.store.records[0].challenger.predictions == [[0.25, 0.75]]


def test_admin_needs_the_configured_token(app: App) -> None:
    routing = {"challenger_weight": 1.0}
    assert app.client.put("/admin/routing", json=routing).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert app.client.put("/admin/routing", json=routing, headers=wrong).status_code == 401
    right = {"Authorization": "Bearer s3cret"}
    answer = app.client.put("/admin/routing", json=routing, headers=right)
    assert answer.json() == {"challenger_weight": 1.0, "testing": True, "revision": 1}
    assert app.registry.tag is not None
    assert orjson.loads(app.registry.tag)["revision"] == 1
    assert app.client.post("/invocations", json=BODY).json()["served_by"] == "challenger"
    assert app.client.get("/status").json()["routing_revision"] == 1
    bad = app.client.put("/admin/routing", json={"challenger_weight": 2}, headers=right)
    assert bad.status_code == 400
    assert app.client.post("/admin/reload", headers=right).json()["changed"] is False


def test_a_routing_change_the_registry_refuses_is_503_and_changes_nothing(app: App) -> None:
    app.registry.refuse_writes = PermissionError("PERMISSION_DENIED")
    right = {"Authorization": "Bearer s3cret"}
    answer = app.client.put("/admin/routing", json={"challenger_weight": 1.0}, headers=right)
    assert answer.status_code == 503
    assert answer.json()["error_code"] == "REGISTRY_UNAVAILABLE"
    status = app.client.get("/status").json()
    assert (status["challenger_weight"], status["routing_revision"]) == (0.0, None)
    assert app.registry.tag is None
    assert app.client.post("/invocations", json=BODY).json()["served_by"] == "champion"


def test_admin_is_forbidden_without_a_configured_token() -> None:
    for app in make_app(admin_token=None):
        assert app.client.post("/admin/reload").status_code == 403
        assert app.client.put("/admin/routing", json={"testing": False}).status_code == 403


def test_no_champion_is_503_everywhere_it_matters() -> None:
    for app in make_app(champion=False):
        assert app.client.get("/ping").status_code == 200
        assert app.client.get("/ready").status_code == 503
        response = app.client.post("/invocations", json=BODY)
        assert response.status_code == 503
        assert response.json()["error_code"] == "NO_CHAMPION"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"label": 1}, "request_id"),
        ({"request_id": "x"}, "label"),
        ([{"request_id": 3, "label": 1}], "request_id"),
    ],
)
def test_bad_feedback_is_refused_with_a_reason(app: App, body: object, message: str) -> None:
    response = app.client.post("/feedback", json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_feedback_reports_unknown_ids_and_keeps_their_labels(app: App) -> None:
    app.client.post("/invocations", json=BODY, headers={"X-Request-ID": "known"})
    poll_until(lambda: app.store.records or None, timeout_s=5, what="the record")
    feedback = [{"request_id": "known", "label": 1}, {"request_id": "ghost", "label": [0, 1]}]
    answer = app.client.post("/feedback", json=feedback).json()
    assert answer == {"accepted": 3, "unknown_request_ids": ["ghost"]}
    assert app.store.labels() == {("known", 0): 1, ("ghost", 0): 0, ("ghost", 1): 1}


def test_unknown_paths_answer_json(app: App) -> None:
    response = app.client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error_code"] == "NOT_FOUND"
