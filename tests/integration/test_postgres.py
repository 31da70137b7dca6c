"""The prediction log on a real PostgreSQL: the store itself, and two workers sharing it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from contender.analysis import load, sql_rows
from contender.predictions import export
from contender.predictions import store as store_module
from contender.predictions.record import ArmOutcome, Feedback, JsonValue, PredictionRecord
from contender.predictions.schema import LATEST_VERSION
from contender.predictions.store import SqlPredictionStore
from tests import export_cases
from tests.integration.conftest import STAGES_MODEL, Registered, ServiceFactory
from tests.integration.test_serving import send_all, split_body
from tests.support import fresh_postgres_database, poll_until
from tests.unit.analysis.test_load import assert_same_rows

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database for this module, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


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


@pytest.fixture
def fresh_url() -> Iterator[str]:
    """A database of its own for each test below: they count and compare every record."""
    with fresh_postgres_database() as url:
        yield url


def _stored(url: str) -> dict[str, dict[str, JsonValue]]:
    store = SqlPredictionStore(url)
    try:
        records = list(store.iter_records())
    finally:
        store.close()
    assert len(records) == len({r["request_id"] for r in records}), "a request id twice"
    return {str(r["request_id"]): r for r in records}


def test_copy_is_idempotent_on_request_id(fresh_url: str) -> None:
    store = SqlPredictionStore(fresh_url)
    try:
        batch = [record(f"r{i}", rows=1 + i % 3) for i in range(6)]
        store.append_many(batch)
        store.append_many(batch)  # the same batch again: a retry after a lost commit
        assert set(_stored(fresh_url)) == {f"r{i}" for i in range(6)}
        # One id already stored, with other content: the first record stays, the rest
        # of the batch goes in; a batch holding one id twice keeps one of them.
        changed = replace(record("r2"), served_by="champion", routing_key="second")
        store.append_many([record("n1"), changed, record("n2"), record("n2")])
    finally:
        store.close()
    stored = _stored(fresh_url)
    assert set(stored) == {*(f"r{i}" for i in range(6)), "n1", "n2"}
    assert (stored["r2"]["served_by"], stored["r2"]["routing_key"]) == ("challenger", "k")
    assert stored["r2"]["inputs"] == {"columns": ["a", "b"], "data": [[1.5, "x"]] * 3}


def test_copy_stores_what_executemany_stored(fresh_url: str) -> None:
    """Every field through binary COPY as through SQLAlchemy's INSERT (the SQLite path):
    JSON nested, None in a JSON column as JSON null, skips, weights, revisions."""
    skipped = replace(
        record("s", rows=2),
        challenger=ArmOutcome("2", skipped="overload"),
        champion=ArmOutcome("1", None, 3.5, "ValueError: boom"),
        challenger_weight=0.25,
        routing_revision=7,
    )
    records = [record("a"), record("b", rows=3), skipped]
    store = SqlPredictionStore(fresh_url)
    try:
        store._insert_many([replace(r, request_id=f"x-{r.request_id}") for r in records])
        store.append_many(records)  # COPY
    finally:
        store.close()
    stored = _stored(fresh_url)
    for r in records:
        by_copy, by_insert = stored[r.request_id], stored[f"x-{r.request_id}"]
        assert {**by_copy, "request_id": None} == {**by_insert, "request_id": None}
    assert stored["s"]["challenger_predictions"] is None
    assert stored["s"]["champion_error"] == "ValueError: boom"
    assert (stored["s"]["challenger_weight"], stored["s"]["routing_revision"]) == (0.25, 7)
    with psycopg.connect(fresh_url) as connection:
        row = connection.execute(
            "SELECT challenger_predictions::text FROM predictions WHERE request_id = 's'"
        ).fetchone()
    assert row == ("null",)  # JSON null, as SQLAlchemy's JSON type stores None


def test_the_migration_to_version_3_adds_the_indexes(fresh_url: str) -> None:
    SqlPredictionStore(fresh_url).close()
    # Back to a version 2 store: no report index, pglz, version 2.
    with psycopg.connect(fresh_url, autocommit=True) as connection:
        connection.execute("DROP INDEX ix_predictions_model_timestamp")
        connection.execute("ALTER TABLE predictions ALTER COLUMN inputs SET COMPRESSION pglz")
        connection.execute("UPDATE contender_schema SET version = 2")
    store = SqlPredictionStore(fresh_url)
    store.append_many([record("after", rows=400)])  # inputs of about 4 kB: compressed
    store.close()
    SqlPredictionStore(fresh_url).close()  # a store at version 3 opens as it is
    with psycopg.connect(fresh_url) as connection:
        indexes: dict[str, str] = dict(
            connection.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'predictions'"
            ).fetchall()
        )
        version = connection.execute("SELECT version FROM contender_schema").fetchall()
        compression = connection.execute(
            "SELECT attname, attcompression FROM pg_attribute WHERE attrelid = "
            "'predictions'::regclass AND attname IN "
            "('inputs', 'champion_predictions', 'challenger_predictions')"
        ).fetchall()
        stored = connection.execute(
            "SELECT pg_column_compression(inputs) FROM predictions WHERE request_id = 'after'"
        ).fetchone()
    assert version == [(LATEST_VERSION,)]
    assert indexes["ix_predictions_model_timestamp"].endswith(
        '(model_name, "timestamp", champion_version, challenger_version)'
    )
    assert "ix_predictions_timestamp" in indexes
    assert dict(compression) == {
        "inputs": "l", "champion_predictions": "l", "challenger_predictions": "l"
    }  # fmt: skip
    assert stored == ("lz4",)


def test_export_streams_and_writes_what_it_wrote_before(
    fresh_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "READ_CHUNK", 3)
    store = SqlPredictionStore(fresh_url)
    try:
        export_cases.fill(store, text_inputs=False)
        assert export_cases.streamed(store, "jsonl", tmp_path) == export_cases.jsonl_before(store)
        assert export_cases.streamed(store, "csv", tmp_path) == export_cases.csv_before(store)
        written = export_cases.streamed(store, "parquet", tmp_path, row_group=4)
        before = export_cases.parquet_before(store)
        assert written.metadata.num_row_groups == 3
        assert written.read().to_pylist() == before.to_pylist()
        assert written.schema_arrow.field("inputs").type == before.schema.field("inputs").type
    finally:
        store.close()


def _open_cursors(connection: sa.Connection) -> list[str]:
    """The statements of this session's open server-side cursors."""
    return [
        str(s) for s in connection.exec_driver_sql("SELECT statement FROM pg_cursors").scalars()
    ]


def test_export_and_report_read_through_server_side_cursors(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "READ_CHUNK", 2)
    store = SqlPredictionStore(fresh_url)
    try:
        store.append_many([record(f"r{i}", rows=1 + i % 2) for i in range(7)])
        store.add_feedback([Feedback("r1", 1, 1), Feedback("r4", 0, 0), Feedback("r5", 0, 1)])
        with store.reader() as reader:
            records = export.reader_records(reader)
            first = next(records)  # one chunk of two fetched, five records still on the server
            (declared,) = _open_cursors(reader._connection)
            assert "FROM predictions ORDER BY predictions.timestamp" in declared
            ids = [first["request_id"], *(r["request_id"] for r in records)]
            assert ids == [f"r{i}" for i in range(7)]
    finally:
        store.close()
    engine = load.open_engine(fresh_url)
    try:
        with engine.connect() as connection:
            query = sa.select(load._P.request_id).order_by(load._P.request_id)
            chunks = sql_rows.stream_tuples(connection, query, size=2)
            assert list(next(chunks)) == [("r0",), ("r1",)]
            (declared,) = _open_cursors(connection)
            assert "ORDER BY predictions.request_id" in declared
            chunks.close()
            assert _open_cursors(connection) == []
    finally:
        engine.dispose()
    # The report's reader: chunks of 2 records (and labels) give what one chunk gives.
    whole = load.load_logged_rows(fresh_url, "m")
    monkeypatch.setattr(sql_rows, "FETCH_SIZE", 2)
    chunked = load.load_logged_rows(fresh_url, "m")
    assert_same_rows(chunked, whole)
    assert chunked.n_requests == 7
    assert np.count_nonzero(~np.isnan(chunked.labels)) == 3
