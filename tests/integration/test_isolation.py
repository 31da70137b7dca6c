"""The challenger can never hurt the client: skipped shadow work and the circuit breaker.

Real `mlflow server`, real models, `contender serve` as a subprocess: shadow work runs in
its low-priority shadow process, exactly as in production.
"""

from __future__ import annotations

import itertools
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx2 as httpx
import pytest
from mlflow import MlflowClient

from contender.predictions.store import SqlPredictionStore
from tests.integration import models
from tests.integration.conftest import (
    COSTLY_MODEL,
    HALF_FAILING_MODEL,
    Registered,
    Service,
    ServiceFactory,
)
from tests.integration.test_serving import split_body, stored_records
from tests.support import poll_until

pytestmark = pytest.mark.integration

TOKEN = "isolation-token"


def metric(service: Service, name: str, labels: str = "") -> float:
    text = httpx.get(f"{service.url}/metrics").text
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def one_by_one(service: Service, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Light load: each request waits until the previous one's record, both arms done, is
    stored. Shadow work then never has to wait behind other shadow work."""
    responses = []
    store = SqlPredictionStore(service.log_store)
    try:
        with httpx.Client(base_url=service.url, timeout=30.0) as client:
            for body in bodies:
                response = client.post("/invocations", json=body)
                responses.append(response)
                request_id: str = response.headers["x-request-id"]
                poll_until(partial(_stored, store, request_id), timeout_s=10, what="the record")
    finally:
        store.close()
    return responses


def _stored(store: SqlPredictionStore, request_id: str) -> bool | None:
    return True if any(r["request_id"] == request_id for r in store.iter_records()) else None


def saturate(service: Service, bodies: list[dict[str, Any]], clients: int) -> list[int]:
    with (
        httpx.Client(base_url=service.url, timeout=30.0) as client,
        ThreadPoolExecutor(clients) as pool,
    ):
        return list(pool.map(lambda b: client.post("/invocations", json=b).status_code, bodies))


def test_a_costly_shadow_challenger_is_skipped_under_load_and_never_at_light_load(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    # 20 ms a call and no batching: the challenger keeps up with 50 requests a second.
    service = start_service(
        "--model", COSTLY_MODEL, "--tracking-uri", mlflow_url, "--challenger-weight", "0",
        "--max-batch-size", "1", "--shadow-max-lag-ms", "200",
    )  # fmt: skip
    rows = registered.trained.rows
    light = one_by_one(service, [split_body(rows.iloc[[i % 50]]) for i in range(20)])
    assert [r.status_code for r in light] == [200] * 20
    records = stored_records(service, 20)
    assert all(r["challenger_skipped"] is None for r in records.values())
    assert all(r["challenger_predictions"] == [[0.5, 0.5]] for r in records.values())

    statuses = saturate(service, [split_body(rows.iloc[[i % 50]]) for i in range(1500)], 16)
    assert statuses == [200] * 1500
    records = stored_records(service, 1520)
    skipped = [r for r in records.values() if r["challenger_skipped"] == "overload"]
    assert len(skipped) > 300  # far more shadow work than 50 a second was asked for
    assert all(r["challenger_predictions"] is None for r in skipped)
    assert all(r["challenger_error"] is None for r in records.values())  # skipped, not failed
    assert all(r["champion_predictions"] is not None for r in records.values())
    counted = metric(
        service, "contender_shadow_skipped_total", '{arm="challenger",reason="overload"}'
    )
    assert counted == len(skipped)

    # Load falls: coverage comes back by itself.
    after = one_by_one(service, [split_body(rows.iloc[[i % 50]]) for i in range(20)])
    ids = {r.headers["x-request-id"] for r in after}
    records = stored_records(service, 1540, frozenset(ids))
    assert all(records[i]["challenger_predictions"] is not None for i in ids)


def test_a_half_failing_challenger_opens_the_breaker_and_a_good_version_closes_it(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    service = start_service(
        "--model", HALF_FAILING_MODEL, "--tracking-uri", mlflow_url,
        "--challenger-weight", "0.5", "--max-batch-size", "1", "--breaker-window", "20",
        "--challenger-timeout-ms", "5000", "--poll-interval", "3600",
        env={"CONTENDER_ADMIN_TOKEN": TOKEN},
    )  # fmt: skip
    rows = registered.trained.rows
    bodies = [split_body(rows.iloc[[i % 50]]) for i in range(20)]
    assert [r.status_code for r in one_by_one(service, bodies)] == [200] * 20
    # Twenty predictions, about half failed: one window, and the breaker is open.
    breaker = poll_until(lambda: _open_breaker(service), timeout_s=10, what="an open breaker")
    assert breaker["error_rate"] > 0.2
    assert metric(service, "contender_breaker_open") == 1.0
    assert metric(service, "contender_breaker_transitions_total", '{to="open"}') == 1.0

    started_at = datetime.now(UTC)
    with httpx.Client(base_url=service.url, timeout=30.0) as client:
        responses = [client.post("/invocations", json=b) for b in bodies * 10]
    assert [r.status_code for r in responses] == [200] * 200
    assert {r.json()["served_by"] for r in responses} == {"champion"}
    ids = frozenset(r.headers["x-request-id"] for r in responses)
    records = [r for r in stored_records(service, 220, ids).values() if r["request_id"] in ids]
    drawn = [r for r in records if r["fallback"]]
    assert 60 < len(drawn) < 140  # about half were drawn for the challenger
    # Held off, the challenger was not waited for: it never ran for those requests.
    probes = sorted(
        datetime.fromisoformat(r["timestamp"]) for r in records if r["challenger_skipped"] is None
    )
    held_off = [r for r in records if r["challenger_skipped"] == "breaker_open"]
    assert len(probes) + len(held_off) == 200
    assert all(r["challenger_latency_ms"] is None for r in held_off)
    elapsed_s = max(datetime.fromisoformat(r["timestamp"]) for r in records) - started_at
    assert len(probes) <= elapsed_s.total_seconds() + 1
    gaps_s = [(b - a).total_seconds() for a, b in itertools.pairwise(probes)]
    assert all(gap >= 0.999 for gap in gaps_s)
    assert httpx.get(f"{service.url}/status").json()["breaker"]["state"] == "open"

    _stage_good_challenger(registered, mlflow_url)
    reload = httpx.post(f"{service.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reload.status_code == 200
    breaker = httpx.get(f"{service.url}/status").json()["breaker"]
    assert breaker == {"state": "closed", "error_rate": 0.0, "opened_at": None}
    after = one_by_one(service, bodies)
    assert [r.status_code for r in after] == [200] * 20
    ids = frozenset(r.headers["x-request-id"] for r in after)
    closed = stored_records(service, 240, ids)
    assert all(closed[i]["challenger_error"] is None for i in ids)
    assert all(closed[i]["challenger_skipped"] is None for i in ids)


def _open_breaker(service: Service) -> dict[str, Any] | None:
    breaker: dict[str, Any] = httpx.get(f"{service.url}/status").json()["breaker"]
    return breaker if breaker["state"] == "open" else None


def _stage_good_challenger(registered: Registered, mlflow_url: str) -> None:
    client = MlflowClient(mlflow_url)
    version = models.register(registered.trained.challenger_uri, HALF_FAILING_MODEL)
    models.set_stage(client, HALF_FAILING_MODEL, version, "Staging")
