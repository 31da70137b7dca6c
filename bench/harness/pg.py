"""PostgreSQL for the benchmarks: a fresh database each, and a fast bulk load of a log.

The server is the local one the tests use (`127.0.0.1:5432`, trust auth); every
database made here is named `contender_bench_*` and dropped when its block ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import psycopg

from contender.predictions.store import SqlPredictionStore

SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def fresh_database(tag: str) -> Iterator[str]:
    """A new empty database; yields its URL and drops it afterwards."""
    name = f"contender_bench_{tag}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_rows(url: str, table: str = "predictions") -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _scrambled(request_id: str) -> str:
    # report_1m's ids are `req-00000042`: sorted, they follow the insertion order, which
    # the service's uuid4 ids never do. A bijection of the index spreads them out.
    index = int(request_id[4:])
    return f"{(index * 0x9E3779B97F4A7C15) % 2**64:016x}{index:08x}"


def bulk_load(
    url: str,
    n: int,
    *,
    labeled_share: float = 0.3,
    seed: int = 7,
    progress: Callable[[int], None] = lambda done: None,
) -> None:
    """`n` one-row records of bench/report_1m.py's generator (binary classifier, the
    challenger slightly better, 10 % served by it, 0.1 % failures), with uuid-like
    request ids, into a store made by `SqlPredictionStore` (so the schema, indexes
    included, is the real one); labels for `labeled_share` of the requests. COPY in
    chunks of 100,000 records, one transaction each; `progress(records so far)`."""
    from report_1m import _PREDICTION_COLUMNS, _records  # bench/ is on sys.path

    SqlPredictionStore(url).close()
    rng = np.random.default_rng(seed + 1)
    done = 0
    with psycopg.connect(url) as connection:
        for predictions, feedback in _records(n, seed):
            keep = rng.random(len(feedback)) < labeled_share
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY predictions ({_PREDICTION_COLUMNS}) FROM STDIN") as copy:
                    for row in predictions:
                        copy.write_row((_scrambled(str(row[0])), *row[1:]))
                with cursor.copy("COPY feedback (request_id, row, label) FROM STDIN") as copy:
                    for (request_id, row_number, label), kept in zip(feedback, keep, strict=True):
                        if kept:
                            copy.write_row((_scrambled(request_id), row_number, label))
            connection.commit()
            done += len(predictions)
            progress(done)
        connection.execute("ANALYZE predictions")
        connection.execute("ANALYZE feedback")
        connection.commit()
