"""contender serve against a real MLflow server, driven over real HTTP."""

from __future__ import annotations

import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from contender.predictions.store import SqlPredictionStore
from contender.routing.policy import arm_for, sticky_draw
from tests.integration.conftest import (
    FLAKY_MODEL,
    SLOW_MODEL,
    STAGES_MODEL,
    Registered,
    Service,
    ServiceFactory,
)
from tests.support import BIN, poll_until, run_cli

pytestmark = pytest.mark.integration


def split_body(rows: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}


def stored_records(
    service: Service, expected: int, ids: frozenset[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    """Poll the store until `expected` records, and those of `ids`, are there (SPEC: within
    2 s of the answer)."""
    store = SqlPredictionStore(service.log_store)
    try:

        def check() -> dict[str, dict[str, Any]] | None:
            records = {record["request_id"]: record for record in store.iter_records()}
            return records if len(records) >= expected and ids <= records.keys() else None

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


def test_routing_key_always_lands_on_the_same_arm(weighted: Service) -> None:
    keys = [f"customer-{i}" for i in range(150)]
    body = {"dataframe_records": [{"f0": 0.1, "f1": 0.2, "f2": 0.3, "f3": 0.4}]}
    first = send_all(weighted.url, [body] * len(keys), [{"X-Routing-Key": k} for k in keys])
    again = send_all(weighted.url, [body] * len(keys), [{"X-Routing-Key": k} for k in keys])
    arms = [response.json()["served_by"] for response in first]
    assert arms == [response.json()["served_by"] for response in again]
    # The arm is the one the documented hash gives, so every replica agrees on it.
    assert arms == [arm_for(sticky_draw(key), 0.1).value for key in keys]
    assert set(arms) == {"champion", "challenger"}


@pytest.fixture(scope="module")
def shadow(start_service: ServiceFactory, registered: Registered, mlflow_url: str) -> Service:
    # Weight from the environment, as CONTENDER_<FLAG>.
    return start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url,
        env={"CONTENDER_CHALLENGER_WEIGHT": "0"},
    )  # fmt: skip


def test_zero_weight_serves_only_the_champion_and_logs_both(
    shadow: Service, registered: Registered
) -> None:
    rows = registered.trained.rows
    responses = send_all(shadow.url, [split_body(rows.iloc[[i % 50]]) for i in range(300)])
    assert {response.json()["served_by"] for response in responses} == {"champion"}
    records = stored_records(shadow, 300)
    assert all(record["challenger_predictions"] is not None for record in records.values())
    assert all(record["routing_draw"] is not None for record in records.values())


def test_log_export_in_every_format(
    shadow: Service, registered: Registered, tmp_path: Path
) -> None:
    rows = registered.trained.rows
    responses = send_all(shadow.url, [split_body(rows.iloc[i : i + 2]) for i in range(10)])
    ids = [response.json()["request_id"] for response in responses]
    stored_records(shadow, len(ids), frozenset(ids))
    labels = [{"request_id": ids[0], "label": [1, 0]}]
    assert httpx.post(f"{shadow.url}/feedback", json=labels).json()["unknown_request_ids"] == []
    export = [str(BIN / "contender"), "log", "export", "--log-store", shadow.log_store]

    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"log.{fmt}"
        result = run_cli([*export, "--format", fmt, "-o", str(out)])
        assert result.returncode == 0, result.stderr
        if fmt == "jsonl":
            exported = [json.loads(line) for line in out.read_text().splitlines()]
        elif fmt == "csv":
            exported = pd.read_csv(out).to_dict(orient="records")
        else:
            exported = pq.read_table(out).to_pylist()
        by_id = {row["request_id"]: row for row in exported}
        assert set(ids) <= set(by_id)
        first = by_id[ids[0]]
        if fmt != "csv":  # csv cannot nest; it carries JSON text
            assert first["label"] == [1, 0]
            assert first["inputs"]["columns"] == ["f0", "f1", "f2", "f3"]
            assert len(first["champion_predictions"]) == 2
        else:
            assert json.loads(first["label"]) == [1, 0]


def test_testing_off_never_invokes_the_challenger(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    service = start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--no-testing",
        "--challenger-weight", "1.0",
    )  # fmt: skip
    rows = registered.trained.rows
    responses = send_all(service.url, [split_body(rows.iloc[[i % 50]]) for i in range(100)])
    assert {response.json()["served_by"] for response in responses} == {"champion"}
    for record in stored_records(service, 100).values():
        assert record["challenger_version"] is None
        assert record["challenger_predictions"] is None
        assert record["challenger_latency_ms"] is None
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'contender_model_latency_seconds_count{arm="challenger"' not in metrics
    assert 'contender_model_latency_seconds_count{arm="champion",version="1"} 100.0' in metrics


def test_failing_challenger_never_reaches_the_client(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    service = start_service(
        "--model", FLAKY_MODEL, "--tracking-uri", mlflow_url, "--challenger-weight", "0.5"
    )
    rows = registered.trained.rows
    responses = send_all(service.url, [split_body(rows.iloc[[i % 50]]) for i in range(200)])
    assert [response.status_code for response in responses] == [200] * 200
    assert {response.json()["served_by"] for response in responses} == {"champion"}
    records = stored_records(service, 200).values()
    fallbacks = [record for record in records if record["fallback"]]
    assert 60 < len(fallbacks) < 140  # about half were drawn for the challenger
    assert all(record["served_by"] == "champion" for record in fallbacks)
    # The first window of 100 fails; then the breaker holds the challenger off.
    failed = [r for r in records if "always fails" in (r["challenger_error"] or "")]
    held_off = [r for r in records if r["challenger_skipped"] == "breaker_open"]
    assert len(failed) >= 100
    assert len(failed) + len(held_off) == 200
    assert all(record["challenger_predictions"] is None for record in records)


def test_slow_challenger_times_out_into_a_fallback(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str
) -> None:
    service = start_service(
        "--model", SLOW_MODEL, "--tracking-uri", mlflow_url,
        "--challenger-weight", "1.0", "--challenger-timeout-ms", "200",
    )  # fmt: skip
    rows = registered.trained.rows
    responses = send_all(service.url, [split_body(rows.iloc[[i]]) for i in range(8)])
    assert [response.json()["served_by"] for response in responses] == ["champion"] * 8
    records = stored_records(service, 8).values()
    # One call ran past the timeout; the ones queued behind it never started: skipped.
    timed_out = [r for r in records if (r["challenger_error"] or "").startswith("TimeoutError")]
    assert timed_out
    assert all(r["challenger_skipped"] == "overload" for r in records if r not in timed_out)
    for record in records:
        assert record["fallback"] is True
