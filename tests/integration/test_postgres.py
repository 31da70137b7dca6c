"""The prediction log on a real PostgreSQL: the store itself, and two workers sharing it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from contender.predictions.record import ArmOutcome, Feedback, PredictionRecord
from contender.predictions.store import SqlPredictionStore
from tests.integration.conftest import STAGES_MODEL, Registered, ServiceFactory
from tests.integration.test_serving import send_all, split_body
from tests.support import poll_until

pytestmark = pytest.mark.integration
SERVER = "postgresql://127.0.0.1:5432"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database for this module, dropped afterwards."""
    name = f"contender_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def record(request_id: str, rows: int = 1) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id, timestamp="2026-01-01T00:00:00.000000+00:00", model_name="m",
        inputs={"columns": ["a", "b"], "data": [[1.5, "x"]] * rows}, served_by="challenger",
        fallback=False, routing_draw=0.95, routing_key="k",
        champion=ArmOutcome("1", [[0.2, 0.8]] * rows, 1.25, None),
        challenger=ArmOutcome("2", [[0.3, 0.7]] * rows, 2.5, None),
    )  # fmt: skip


def test_the_store_round_trips_records_and_labels(database: str) -> None:
    store = SqlPredictionStore(database)
    try:
        store.append_many([record("a"), record("b", rows=2)])
        store.append_many([record("a")])  # a retried batch never doubles a record
        unknown = store.add_feedback(
            [Feedback("a", 0, 1), Feedback("b", 1, 0), Feedback("z", 0, 1)]
        )
        records = {row["request_id"]: row for row in store.iter_records()}
        assert set(records) == {"a", "b"}
        assert records["b"]["inputs"] == {"columns": ["a", "b"], "data": [[1.5, "x"]] * 2}
        assert records["a"]["challenger_predictions"] == [[0.3, 0.7]]
        assert records["a"]["routing_draw"] == 0.95
        assert unknown == ["z"]
        assert store.labels() == {("a", 0): 1, ("b", 1): 0, ("z", 0): 1}
    finally:
        store.close()


def test_two_workers_share_one_postgres_log(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str, database: str
) -> None:
    service = start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--workers", "2",
        "--log-store", database,
    )  # fmt: skip
    rows = registered.trained.rows
    responses = send_all(service.url, [split_body(rows.iloc[[i % 50]]) for i in range(300)])
    assert [response.status_code for response in responses] == [200] * 300
    ids = {response.json()["request_id"] for response in responses}
    store = SqlPredictionStore(database)
    try:
        stored = poll_until(
            lambda: (found if ids <= (found := {r["request_id"] for r in store.iter_records()})
                     else None),
            timeout_s=10, what="every record in PostgreSQL",
        )  # fmt: skip
    finally:
        store.close()
    assert ids <= stored
