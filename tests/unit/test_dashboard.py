"""GET /dashboard in-process: the page and its assets, and the JSON it polls."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from contender.compose import build_services
from contender.http.app import create_app
from contender.settings import Settings
from tests.fakes import FakeClock, FakeLoader, FakeRegistryClient, ListStore, model_ref
from tests.support import poll_until

BODY = {"dataframe_split": {"columns": ["a", "b"], "data": [[0.25, 0.5]]}}
STATIC = Path(__file__).parents[2] / "src" / "contender" / "http" / "static"


@pytest.fixture
def client() -> Iterator[TestClient]:
    registry = FakeRegistryClient(model_ref("m", "1"), model_ref("m", "2"))
    settings = Settings(model="m", admin_token="s3cret", challenger_weight=0.5)
    services = build_services(
        settings, clock=FakeClock(), rng=random.Random(3), registry_client=registry,
        loader=FakeLoader(), store=ListStore(),
    )  # fmt: skip
    with TestClient(create_app(services)) as client:
        yield client


def data(client: TestClient) -> dict[str, Any]:
    response = client.get("/dashboard/data")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    document: dict[str, Any] = response.json()
    return document


def test_the_page_and_its_assets_come_from_the_service(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    for path, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = client.get(f"/dashboard/{path}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)
        assert asset.content == (STATIC / path).read_bytes()
    # Every reference of the page is relative: nothing from another host.
    references = re.findall(rb'(?:src|href)="([^"]*)"', page.content)
    assert references == [b"data:,", b"dashboard/dashboard.css", b"dashboard/dashboard.js"]


def test_no_asset_names_another_host() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        # The SVG namespace is a name, never fetched.
        hosts = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert hosts == set(), path.name


def test_the_data_shows_slots_routing_and_traffic(client: TestClient) -> None:
    first = data(client)
    assert first["model"] == "m"
    assert (first["champion"]["version"], first["challenger"]["version"]) == ("1", "2")
    assert first["champion"]["loaded_at"]
    assert first["routing"] == {
        "testing": True,
        "challenger_weight": 0.5,
        "revision": None,
        "error": None,
    }
    assert first["admin_enabled"] is True
    assert first["breaker"]["state"] == "closed"
    assert first["log_store"]["healthy"] is True
    assert [event["slot"] for event in first["reloads"]] == ["challenger", "champion"]
    assert first["live"]["window"]["requests"] == 0

    answers = [client.post("/invocations", json=BODY).json() for _ in range(40)]
    served = sum(answer["served_by"] == "challenger" for answer in answers)

    def counted() -> dict[str, Any] | None:
        window: dict[str, Any] = data(client)["live"]["window"]
        return window if window["requests"] == 40 else None

    window = poll_until(counted, timeout_s=10, what="40 requests in the series")
    assert window["arms"]["challenger"]["served"] == served
    assert window["arms"]["champion"]["predictions"] == 40
    assert window["agreement"] == {"rows": 40, "agreed": 40, "share": 1.0}
    assert window["expected_challenger_share"] == 0.5


def test_viewing_needs_no_token_and_changing_routing_does(client: TestClient) -> None:
    assert client.get("/dashboard").status_code == 200
    assert client.put("/admin/routing", json={"challenger_weight": 1.0}).status_code == 401
    right = {"Authorization": "Bearer s3cret"}
    answer = client.put("/admin/routing", json={"challenger_weight": 1.0}, headers=right)
    assert answer.status_code == 200
    assert data(client)["routing"]["challenger_weight"] == 1.0
