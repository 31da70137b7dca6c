"""GET /openapi.json: a valid OpenAPI 3.1 document, of exactly the app's routes, whose
schemas the real answers (and the requests that got them) match."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import httpx2
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route
from starlette.testclient import TestClient

from contender.compose import build_services
from contender.errors import StoreUnavailable
from contender.http.app import create_app
from contender.http.openapi import DOCUMENT
from contender.settings import Settings
from tests.fakes import FakeClock, FakeRegistryClient, ListStore, model_ref
from tests.unit.test_v2 import DOUBLES, PROBABILITIES, SignedLoader

_BASE = "urn:contender:openapi"
_REGISTRY: Registry[Any] = Registry().with_resource(
    _BASE, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)
ADMIN = {"Authorization": "Bearer s3cret"}
SPLIT = {"dataframe_split": {"columns": ["a", "b"], "data": [[0.25, 0.5]]}}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """A champion (1) and a challenger (2) with the signature a, b (doubles); 3 rows at most."""
    ids = itertools.count()
    services = build_services(
        Settings(model="m", admin_token="s3cret", challenger_weight=0.0, max_rows=3),
        clock=FakeClock(), rng=random.Random(1),
        registry_client=FakeRegistryClient(model_ref("m", "1"), model_ref("m", "2")),
        loader=SignedLoader(DOUBLES, PROBABILITIES, frozenset(), None), store=ListStore(),
        new_request_id=lambda: f"req-{next(ids)}",
    )  # fmt: skip
    with TestClient(create_app(services)) as client:
        yield client


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _validator(*parts: str) -> Draft202012Validator:
    """The schema at `DOCUMENT[parts...]`, its `$ref`s resolved in the document."""
    ref = {"$ref": f"{_BASE}#/{_pointer(*parts)}"}
    return Draft202012Validator(
        ref, registry=_REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def check(response: httpx2.Response, path: str, body: Any = None) -> None:
    """`response` (and the JSON `body` sent) match the document at `path` (a template)."""
    method = response.request.method.lower()
    operation = DOCUMENT["paths"][path][method]
    if body is not None:
        assert "application/json" in operation["requestBody"]["content"]
        request_schema = ("paths", path, method, "requestBody", "content", "application/json")
        _validator(*request_schema, "schema").validate(body)
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} is not documented"
    documented = operation["responses"][status]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in documented["content"], f"{method} {path} {status}: {media_type}"
    for header in documented.get("headers", {}):
        if header != "Inference-Header-Content-Length":
            assert header in response.headers, f"{method} {path} {status}: no {header}"
    if media_type == "application/json":
        where = ("paths", path, method, "responses", status, "content", media_type, "schema")
        _validator(*where).validate(response.json())


def test_the_document_is_valid_openapi_3_1(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document == orjson.loads(orjson.dumps(DOCUMENT))
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_has_every_route_and_only_routes(client: TestClient) -> None:
    served: set[tuple[str, str]] = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route)
        served |= {
            (route.path, method.lower()) for method in route.methods or () if method != "HEAD"
        }
    documented = {
        (path, method) for path, operations in DOCUMENT["paths"].items() for method in operations
    }
    assert documented == served


@pytest.mark.parametrize(
    "body",
    [
        SPLIT,
        {**SPLIT, "params": {"threshold": 0.5}},
        {"dataframe_records": [{"a": 0.25, "b": 0.5}, {"a": 1.0, "b": 0.0}]},
        {"instances": [{"a": 0.25, "b": 0.5}]},
        {"inputs": {"a": [0.25], "b": [0.5]}},
    ],
    ids=["split", "params", "records", "instances", "inputs"],
)
def test_invocations_in_every_json_form(client: TestClient, body: Any) -> None:
    response = client.post("/invocations", json=body, headers={"X-Request-ID": "mine"})
    assert response.status_code == 200, response.text
    assert response.json()["request_id"] == "mine"
    check(response, "/invocations", body)


def test_invocations_in_csv(client: TestClient) -> None:
    csv = {"Content-Type": "text/csv"}
    response = client.post("/invocations", content=b"a,b\n0.25,0.5\n", headers=csv)
    assert response.status_code == 200, response.text
    check(response, "/invocations")


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (orjson.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}), None, 400),
        (b"a,b\n1,2\n", "application/xml", 415),
        (
            orjson.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[0, 1]] * 4}}),
            None,
            413,
        ),
    ],
    ids=["unparseable", "missing-column", "media-type", "too-many-rows"],
)
def test_invocation_errors(
    client: TestClient, content: bytes, content_type: str | None, status: int
) -> None:
    headers = {"Content-Type": content_type or "application/json"}
    response = client.post("/invocations", content=content, headers=headers)
    assert response.status_code == status, response.text
    check(response, "/invocations")


def test_feedback_single_and_list(client: TestClient) -> None:
    one = {"request_id": "someone", "label": 1}
    check(client.post("/feedback", json=one), "/feedback", one)
    many = [one, {"request_id": "another", "label": [0, 1]}]
    response = client.post("/feedback", json=many)
    assert response.json()["accepted"] == 3
    check(response, "/feedback", many)
    bad = client.post("/feedback", json={"label": 1})
    assert bad.status_code == 400
    check(bad, "/feedback")


def test_feedback_while_the_store_is_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(items: Any) -> list[str]:
        raise StoreUnavailable("the log store cannot take labels now (database is locked)")

    store = client.app.state.services.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "add_feedback", refuse)
    one = {"request_id": "during-the-outage", "label": 1}
    response = client.post("/feedback", json=one)
    assert response.status_code == 202, response.text
    assert response.json()["buffered"] is True
    check(response, "/feedback", one)


@pytest.mark.parametrize(
    "path",
    ["/ping", "/health", "/ready", "/version", "/status", "/dashboard/data", "/openapi.json"],
)
def test_status_answers(client: TestClient, path: str) -> None:
    client.post("/admin/reload", headers=ADMIN)  # some reload events for /status
    response = client.get(path)
    assert response.status_code == 200
    check(response, path)


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/metrics", "text/plain"),
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
    ],
)
def test_text_answers(client: TestClient, path: str, media_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    check(response, path)


def test_admin_with_and_without_a_token(client: TestClient) -> None:
    change = {"testing": True}
    check(client.put("/admin/routing", json=change), "/admin/routing", change)
    wrong = {"Authorization": "Bearer nope"}
    unauthorized = client.post("/admin/reload", headers=wrong)
    assert unauthorized.status_code == 401
    check(unauthorized, "/admin/reload")
    answer = client.put("/admin/routing", json=change, headers=ADMIN)
    assert answer.status_code == 200
    check(answer, "/admin/routing", change)
    bad = client.put("/admin/routing", json={"challenger_weight": 2}, headers=ADMIN)
    assert bad.status_code == 400
    check(bad, "/admin/routing")
    reload = client.post("/admin/reload", headers=ADMIN)
    assert reload.status_code == 200
    check(reload, "/admin/reload")


def test_admin_without_a_configured_token_is_403() -> None:
    services = build_services(
        Settings(model="m"), clock=FakeClock(), rng=random.Random(1),
        registry_client=FakeRegistryClient(model_ref("m", "1")),
        loader=SignedLoader(DOUBLES, PROBABILITIES, frozenset(), None), store=ListStore(),
    )  # fmt: skip
    with TestClient(create_app(services)) as client:
        change = {"challenger_weight": 0.5}
        response = client.put("/admin/routing", json=change)
        assert response.status_code == 403
        check(response, "/admin/routing", change)


V2_MODEL = "/v2/models/{model}"
V2_VERSION = "/v2/models/{model}/versions/{version}"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/v2", "/v2"),
        ("/v2/health/live", "/v2/health/live"),
        ("/v2/health/ready", "/v2/health/ready"),
        ("/v2/models/m", V2_MODEL),
        ("/v2/models/m/ready", V2_MODEL + "/ready"),
        ("/v2/models/m/versions/2", V2_VERSION),
        ("/v2/models/m/versions/2/ready", V2_VERSION + "/ready"),
        ("/v2/models/other", V2_MODEL),
        ("/v2/models/m/versions/9/ready", V2_VERSION + "/ready"),
    ],
)
def test_v2_metadata(client: TestClient, url: str, path: str) -> None:
    response = client.get(url)
    assert response.status_code == (404 if "other" in url or "/9" in url else 200)
    check(response, path)


INFER = {
    "id": "1",
    "inputs": [
        {"name": name, "shape": [2], "datatype": "FP64", "data": values}
        for name, values in (("a", [0.25, 1.0]), ("b", [0.5, 0.0]))
    ],
}


@pytest.mark.parametrize(
    ("url", "path", "body", "status"),
    [
        ("/v2/models/m/infer", V2_MODEL + "/infer", INFER, 200),
        ("/v2/models/m/versions/1/infer", V2_VERSION + "/infer", INFER, 200),
        ("/v2/models/m/infer", V2_MODEL + "/infer", {"inputs": [INFER["inputs"][0]]}, 400),
        ("/v2/models/x/infer", V2_MODEL + "/infer", INFER, 404),
    ],
    ids=["infer", "versioned", "missing-column", "unknown-model"],
)
def test_v2_infer(client: TestClient, url: str, path: str, body: Any, status: int) -> None:
    response = client.post(url, json=body)
    assert response.status_code == status, response.text
    check(response, path, body)


@pytest.mark.parametrize(
    ("method", "url", "path"),
    [
        ("GET", "/ready", "/ready"),
        ("POST", "/invocations", "/invocations"),
        ("GET", "/v2/health/ready", "/v2/health/ready"),
        ("GET", "/v2/models/m", V2_MODEL),
        ("POST", "/v2/models/m/infer", V2_MODEL + "/infer"),
    ],
)
def test_no_champion_is_a_documented_503(method: str, url: str, path: str) -> None:
    services = build_services(
        Settings(model="m"), clock=FakeClock(), rng=random.Random(1),
        registry_client=FakeRegistryClient(None, model_ref("m", "2")),
        loader=SignedLoader(DOUBLES, PROBABILITIES, frozenset(), None), store=ListStore(),
    )  # fmt: skip
    with TestClient(create_app(services)) as client:
        body = INFER if "v2" in url else SPLIT
        response = client.request(method, url, json=body if method == "POST" else None)
        assert response.status_code == 503, response.text
        check(response, path)
