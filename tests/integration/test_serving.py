"""contender serve against a real MLflow server, driven over real HTTP."""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import pytest

from contender.predictions.store import SqlPredictionStore
from tests.integration.conftest import (
    STAGES_MODEL,
    Registered,
    Service,
    ServiceFactory,
)
from tests.support import poll_until

pytestmark = pytest.mark.integration


def split_body(rows: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}


def stored_records(service: Service, expected: int) -> dict[str, dict[str, Any]]:
    """Poll the store until `expected` records are there (SPEC: within 2 s of the answer)."""
    store = SqlPredictionStore(service.log_store)
    try:

        def check() -> dict[str, dict[str, Any]] | None:
            records = {record["request_id"]: record for record in store.iter_records()}
            return records if len(records) >= expected else None

        return poll_until(check, timeout_s=10, what=f"{expected} stored records")
    finally:
        store.close()


@pytest.fixture(scope="module")
def weighted(start_service: ServiceFactory, registered: Registered, mlflow_url: str) -> Service:
    return start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--challenger-weight", "0.1"
    )


def send_all(url: str, bodies: list[dict[str, Any]], headers: list[dict[str, str]] | None = None
             ) -> list[httpx.Response]:  # fmt: skip
    headers = headers or [{} for _ in bodies]
    with httpx.Client(base_url=url, timeout=30.0) as client, ThreadPoolExecutor(8) as pool:
        return list(
            pool.map(
                lambda pair: client.post("/invocations", json=pair[0], headers=pair[1]),
                zip(bodies, headers, strict=True),
            )
        )


def test_share_answers_and_log_records(weighted: Service, registered: Registered) -> None:
    trained = registered.trained
    rows = trained.rows
    expected = {
        "champion": trained.expected(trained.champion, rows),
        "challenger": trained.expected(trained.challenger, rows),
    }
    n = 2000
    bodies = [split_body(rows.iloc[[i % len(rows)]]) for i in range(n)]
    responses = send_all(weighted.url, bodies)

    assert [response.status_code for response in responses] == [200] * n
    served = Counter(response.json()["served_by"] for response in responses)
    w = 0.1
    assert abs(served["challenger"] - n * w) <= 4 * math.sqrt(n * w * (1 - w)), served
    champion_version, challenger_version = registered.versions[STAGES_MODEL]
    for i, response in enumerate(responses):
        document = response.json()
        arm = document["served_by"]
        assert document["predictions"][0] == pytest.approx(expected[arm][i % len(rows)])
        assert response.headers["X-Served-By"] == arm
        assert response.headers["X-Request-ID"] == document["request_id"]
        version = champion_version if arm == "champion" else challenger_version
        assert document["model_version"] == response.headers["X-Model-Version"] == version

    records = stored_records(weighted, n)
    for i, response in enumerate(responses):
        document = response.json()
        record = records[document["request_id"]]
        row = i % len(rows)
        assert record["served_by"] == document["served_by"]
        assert record["fallback"] is False
        assert record["champion_predictions"][0] == pytest.approx(expected["champion"][row])
        assert record["challenger_predictions"][0] == pytest.approx(expected["challenger"][row])
        assert record[f"{document['served_by']}_predictions"] == document["predictions"]
        assert record["inputs"] == {
            "columns": list(rows.columns),
            "data": bodies[i]["dataframe_split"]["data"],
        }
        assert record["champion_version"] == champion_version
        assert record["challenger_version"] == challenger_version
        assert record["champion_latency_ms"] > 0
        assert record["challenger_latency_ms"] > 0
