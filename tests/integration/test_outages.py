"""Nothing acknowledged is lost: real stores taken away under real traffic.

An SQLite store held under an exclusive lock, a PostgreSQL database that refuses
connections, each for 15 s while clients send requests to a real `contender serve`: every
request is answered, the records past the small in-memory buffer spill to files that the
service loads back by itself, and afterwards the store holds every acknowledged request
exactly once. Labels sent meanwhile are accepted (202) and stored once the store is back.
A SIGTERM during an outage exits in time with the rest (records and labels) in the spill
directory, and `contender log recover` brings the store to exactly the acknowledged set.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import psycopg
import pytest

from contender.predictions.spill import SpillDirectory, read_rows
from tests.integration.conftest import (
    STAGES_MODEL,
    Registered,
    Service,
    ServiceFactory,
    log_path_of,
)
from tests.integration.test_serving import split_body
from tests.integration.traffic import Load
from tests.support import BIN, POSTGRES, fresh_postgres_database, poll_until, run_cli

pytestmark = pytest.mark.integration

OUTAGE_S = 15.0


def stored_ids(service: Service, postgres: str | None = None) -> list[str]:
    """Request ids in the service's SQLite store, or in the PostgreSQL database given."""
    if postgres is None:
        with sqlite3.connect(log_path_of(service)) as connection:
            return [row[0] for row in connection.execute("SELECT request_id FROM predictions")]
    with psycopg.connect(postgres) as connection:
        return [row[0] for row in connection.execute("SELECT request_id FROM predictions")]


def stored_labels(service: Service) -> dict[str, int]:
    with sqlite3.connect(log_path_of(service)) as connection:
        rows = connection.execute("SELECT request_id, label FROM feedback WHERE row = 0")
        return {request_id: int(label) for request_id, label in rows}


def send_labels_while_down(service: Service, labels: dict[str, int]) -> None:
    """Labels posted during the outage are accepted for later, and the connection serves on."""
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for request_id, label in labels.items():
            answer = client.post("/feedback", json={"request_id": request_id, "label": label})
            assert answer.status_code == 202, answer.text
            assert answer.json() == {"accepted": 1, "unknown_request_ids": [], "buffered": True}
        assert client.get("/ping").status_code == 200


def spilled_ids(spill_dir: Path) -> set[str]:
    ids: set[str] = set()
    for path in spill_dir.glob("spill-*"):
        rows, _ = read_rows(path)
        ids.update(str(row["request_id"]) for row in rows)
    return ids


@pytest.fixture
def start(start_service: ServiceFactory, mlflow_url: str) -> Callable[..., Service]:
    """A service with a buffer of 100 records, spilling to the given directory."""

    def started(spill_dir: Path, *extra: str) -> Service:
        return start_service(
            "--model", STAGES_MODEL, "--tracking-uri", mlflow_url,
            "--log-buffer-records", "100", "--spill-dir", str(spill_dir), *extra,
        )  # fmt: skip

    return started


def ride_out_an_outage(
    service: Service,
    spill_dir: Path,
    registered: Registered,
    outage: Callable[[], Callable[[], None]],
    postgres: str | None = None,
    while_down: Callable[[], list[str]] = list,
) -> Load:
    """Traffic before, during and after `outage()` (which returns what ends it)."""
    load = Load([service.url], split_body(registered.trained.rows.iloc[[5]]))
    finish = load.run(threads=3)
    try:
        load.wait_for_answers_after(time.time(), count=50)
        began = time.time()
        end_outage = outage()
        try:
            poll_until(
                lambda: True if list(spill_dir.glob("spill-*.jsonl")) else None,
                timeout_s=OUTAGE_S,
                what="records past the buffer to spill",
            )
            status = httpx.get(f"{service.url}/status").json()["log_store"]
            assert status["healthy"] is False
            assert status["spilled"] > 0
            assert status["buffered"] < 1000
            extra_acknowledged = while_down()
            load.wait_for_answers_after(began + OUTAGE_S, count=1)  # the outage lasts 15 s
        finally:
            end_outage()
        ended = time.time()
        load.wait_for_answers_after(ended, count=50)
    finally:
        finish()
    assert load.failures == [], load.failures[:5]
    during = load.latencies_between(began, ended)
    assert len(during) > 100
    assert float(np.percentile(during, 99)) < 1.0, "p99 during the outage"
    acknowledged = [*load.acknowledged, *extra_acknowledged]
    poll_until(
        lambda: True if set(acknowledged) <= set(stored_ids(service, postgres)) else None,
        timeout_s=60,
        what="every acknowledged record in the store",
    )
    poll_until(
        lambda: True if not list(spill_dir.iterdir()) else None,
        timeout_s=30,
        what="the spill files to be loaded back and removed",
    )
    assert service.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises it after shutdown
    ids = stored_ids(service, postgres)
    assert len(ids) == len(set(ids))
    assert set(ids) == set(acknowledged)
    return load


def test_a_locked_sqlite_store_loses_nothing(
    start: Callable[..., Service], registered: Registered, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    service = start(spill_dir)

    def lock() -> Callable[[], None]:
        holder = sqlite3.connect(log_path_of(service), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")

        def release() -> None:
            holder.execute("ROLLBACK")
            holder.close()

        return release

    labels: dict[str, int] = {}

    def score_and_label_while_down() -> list[str]:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            body = split_body(registered.trained.rows.iloc[[1]])
            answers = [client.post("/invocations", json=body) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [200] * 3
        ids = [answer.headers["X-Request-ID"] for answer in answers]
        labels.update({ids[0]: 1, ids[1]: 0, "not-a-logged-request": 1})
        send_labels_while_down(service, labels)
        return ids

    ride_out_an_outage(service, spill_dir, registered, lock, while_down=score_and_label_while_down)
    # A label waits in memory or in a spill file, but lands, unknown request id or not.
    poll_until(
        lambda: True if stored_labels(service) == labels else None,
        timeout_s=30,
        what="the labels sent during the outage in the store",
    )


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The name of a fresh database."""
    with fresh_postgres_database() as url:
        yield url.rsplit("/", 1)[1]


def test_a_postgres_store_that_refuses_connections_loses_nothing(
    start: Callable[..., Service], registered: Registered, tmp_path: Path, postgres_database: str
) -> None:
    spill_dir = tmp_path / "spill"
    service = start(spill_dir, "--log-store", f"{POSTGRES}/{postgres_database}")

    def refuse() -> Callable[[], None]:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{postgres_database}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (postgres_database,),
            )

        def allow() -> None:
            with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{postgres_database}" ALLOW_CONNECTIONS true')

        return allow

    ride_out_an_outage(
        service, spill_dir, registered, refuse, postgres=f"{POSTGRES}/{postgres_database}"
    )


def test_a_sigterm_during_an_outage_spills_the_rest_and_recover_loads_it(
    start: Callable[..., Service], registered: Registered, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    service = start(spill_dir)
    load = Load([service.url], split_body(registered.trained.rows.iloc[[6]]))
    finish = load.run(threads=3)
    holder: sqlite3.Connection | None = None
    try:
        load.wait_for_answers_after(time.time(), count=50)
        holder = sqlite3.connect(log_path_of(service), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        load.wait_for_answers_after(time.time(), count=300)
        labels = {load.acknowledged[0]: 1, load.acknowledged[-1]: 0}
        send_labels_while_down(service, labels)
    finally:
        finish()
    assert load.failures == []
    stopping = time.monotonic()
    assert service.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises it after shutdown
    assert time.monotonic() - stopping < 30, "SIGTERM during an outage exits within 30 s"
    assert holder is not None
    holder.execute("ROLLBACK")
    holder.close()

    acknowledged = set(load.acknowledged)
    in_store = set(stored_ids(service))
    assert acknowledged - in_store, "the outage should have kept some records out"
    assert acknowledged - in_store <= spilled_ids(spill_dir)
    recovered = run_cli(
        [str(BIN / "contender"), "log", "recover", "--spill-dir", str(spill_dir),
         "--log-store", service.log_store]
    )  # fmt: skip
    assert recovered.returncode == 0, recovered.stderr
    assert "recovered" in recovered.stderr
    ids = stored_ids(service)
    assert len(ids) == len(set(ids))
    assert set(ids) == acknowledged
    assert stored_labels(service) == labels
    assert SpillDirectory(spill_dir).finished() == []
    assert not list(spill_dir.iterdir())
