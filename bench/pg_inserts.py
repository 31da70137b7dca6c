"""PostgreSQL insert paths for the prediction log, side by side: records/s per batch of 512.

    .venv/bin/python bench/pg_inserts.py [--rounds 5] [--batches-1row 10] [--batches-100rows 3]

In a fresh database `contender_bench_inserts_*` (dropped at the end), with the store's
real schema, each approach stores batches of 512 realistic records (`harness/records.py`:
the service's own `inputs` callable over a DataFrame of 10 float columns, class
probabilities as numpy arrays for both arms) of 1 and of 100 input rows, and the JSON
columns compressed with lz4 (what migration 3 sets) and with PostgreSQL's default pglz.
What is timed is `append_many` as the log writer calls it: `to_row`, JSON encoding,
the round trips and the commit. Every round measures every case once on an emptied
table, the order of the approaches reversed every other round; the figures are the
median of the rounds (beside their range) and the CPU time per record of this process
plus the server's (from /proc), which the machine's other load disturbs less.

Approaches:
- executemany (before): SQLAlchemy executemany of `INSERT ... ON CONFLICT (request_id)
  DO NOTHING`, the store's path before COPY (psycopg pipelines it);
- psycopg executemany: the same statement through psycopg's own pipelined executemany,
  rows encoded beforehand, no SQLAlchemy;
- COPY via temp table: binary COPY into a temporary table, then `INSERT ... SELECT ...
  ON CONFLICT DO NOTHING`, for every batch;
- COPY, savepoint (chosen): `SqlPredictionStore.append_many` now, binary COPY straight
  into `predictions` in a savepoint; a batch that meets a stored id goes the temp-table
  way;
- chosen, retried batch: the same for a batch that is already stored (the temp-table
  way, every record skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from contender.predictions import store as store_module
from contender.predictions.record import PredictionRecord
from contender.predictions.schema import predictions_table
from contender.predictions.store import SqlPredictionStore
from harness.pg import fresh_database
from harness.records import RecordFactory

BATCH = 512
RESULTS = Path(__file__).parent / "results" / "pg_inserts.json"
_COLUMNS = [column.name for column in predictions_table.columns]
_JSON = {column.name for column in predictions_table.columns if isinstance(column.type, sa.JSON)}
_INSERT = (
    f"INSERT INTO predictions ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) ON CONFLICT (request_id) DO NOTHING"
)

Approach = Callable[[SqlPredictionStore, Sequence[PredictionRecord]], None]


def _engine(store: SqlPredictionStore) -> sa.Engine:
    return store._engine  # the store's own engine and pool, as append_many uses them


def executemany_before(store: SqlPredictionStore, records: Sequence[PredictionRecord]) -> None:
    store._insert_many(records)


def psycopg_executemany(store: SqlPredictionStore, records: Sequence[PredictionRecord]) -> None:
    rows = []
    for record in records:
        row = record.to_row()
        rows.append(
            tuple(store_module._to_json(row[c]) if c in _JSON else row[c] for c in _COLUMNS)
        )
    with _engine(store).begin() as connection:
        driver: Any = connection.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.executemany(_INSERT, rows)


def copy_via_temp_table(store: SqlPredictionStore, records: Sequence[PredictionRecord]) -> None:
    rows = [store_module._copy_row(record.to_row()) for record in records]
    with _engine(store).begin() as connection:
        driver: Any = connection.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute(store_module._create_staging(driver.info.server_version))
            store_module._copy(driver, store_module._STAGING, rows)
            cursor.execute(store_module._INSERT_FROM_STAGING)


def copy_chosen(store: SqlPredictionStore, records: Sequence[PredictionRecord]) -> None:
    store.append_many(records)


APPROACHES: dict[str, Approach] = {
    "executemany (before)": executemany_before,
    "psycopg executemany": psycopg_executemany,
    "COPY via temp table": copy_via_temp_table,
    "COPY, savepoint (chosen)": copy_chosen,
    "chosen, retried batch": copy_chosen,
}


def _set_compression(url: str, method: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for name in sorted(_JSON):
            connection.execute(
                f"ALTER TABLE predictions ALTER COLUMN {name} SET COMPRESSION {method}"
            )


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("TRUNCATE predictions")


def _backend_pids(url: str) -> list[int]:
    """The server processes of this database's sessions (the store's pooled ones)."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def _cpu_s(pid: int) -> float:
    """utime + stime of a local process (the server runs on this machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    records_per_s: float
    cpu_us_per_record: float
    """This process's CPU time plus the server's, per record: less noisy than wall time
    on a shared machine, and what a record costs the two cores."""


def _measure(
    store: SqlPredictionStore, url: str, name: str, batches: list[list[PredictionRecord]]
) -> Sample:
    approach = APPROACHES[name]
    _truncate(url)
    if name == "chosen, retried batch":
        for batch in batches:
            store.append_many(batch)
    else:
        store.append_many(batches[0][:1])  # the pool's connection exists before the clock
        _truncate(url)
    pids = _backend_pids(url)
    server_before = sum(_cpu_s(pid) for pid in pids)
    client_before = time.process_time()
    started = time.perf_counter()
    for batch in batches:
        approach(store, batch)
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - client_before + sum(_cpu_s(pid) for pid in pids) - server_before
    records = sum(len(batch) for batch in batches)
    return Sample(records / elapsed, cpu_s / records * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches-1row", type=int, default=8)
    parser.add_argument("--batches-100rows", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=150)
    sizes = {1: args.batches_1row, 100: args.batches_100rows}
    factories = {rows: RecordFactory(rows) for rows in sizes}
    cases = [(rows, method) for rows in sizes for method in ("lz4", "pglz")]
    samples: dict[str, dict[str, list[Sample]]] = {name: {} for name in APPROACHES}
    with fresh_database("inserts") as url:
        store = SqlPredictionStore(url)
        try:
            for rows in sizes:  # warm-up, not measured: connections, prepared statements
                for name in APPROACHES:
                    _measure(store, url, name, [factories[rows].make(BATCH)])
            for round_number in range(args.rounds):
                # The order alternates between rounds, so a drift of the machine's speed
                # within a round weighs on every approach alike.
                order = list(APPROACHES)[:: 1 if round_number % 2 == 0 else -1]
                for rows, method in cases:
                    _set_compression(url, method)
                    for name in order:
                        batches = [factories[rows].make(BATCH) for _ in range(sizes[rows])]
                        sample = _measure(store, url, name, batches)
                        samples[name].setdefault(f"{rows}:{method}", []).append(sample)
                console.print(f"round {round_number + 1}/{args.rounds} done")
        finally:
            store.close()
    table = Table(
        title=f"records/s, batches of {BATCH}: median of {args.rounds} rounds (their range); "
        "CPU µs per record, client + server (median)"
    )
    table.add_column("approach")
    for rows, method in cases:
        table.add_column(f"{rows} row{'s' if rows > 1 else ''}, {method}", justify="right")
    for name, by_case in samples.items():
        cells = []
        for rows, method in cases:
            rates = [sample.records_per_s for sample in by_case[f"{rows}:{method}"]]
            cpu = statistics.median(s.cpu_us_per_record for s in by_case[f"{rows}:{method}"])
            cells.append(
                f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})\n"
                f"{cpu:,.0f} µs CPU"
            )
        table.add_row(name, *cells)
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "batch": BATCH,
                "rounds": args.rounds,
                "batches": {str(rows): count for rows, count in sizes.items()},
                "samples": {
                    name: {case: [vars(s) for s in runs] for case, runs in by_case.items()}
                    for name, by_case in samples.items()
                },
                "median_records_per_s": {
                    name: {
                        case: statistics.median(s.records_per_s for s in runs)
                        for case, runs in by_case.items()
                    }
                    for name, by_case in samples.items()
                },
                "median_cpu_us_per_record": {
                    name: {
                        case: statistics.median(s.cpu_us_per_record for s in runs)
                        for case, runs in by_case.items()
                    }
                    for name, by_case in samples.items()
                },
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
