"""Where prediction records and ground truth live.

`PredictionStore` is the role; `SqlPredictionStore` implements it with SQLAlchemy for
both the embedded SQLite default and PostgreSQL shared by many workers and replicas.
Inserts are idempotent on `request_id`, so a batch retried after a store outage
never doubles a record.

On PostgreSQL a batch goes in with one binary `COPY` (for one-row requests about twice
the records/s of the `INSERT ... ON CONFLICT` executemany SQLite keeps:
`bench/pg_inserts.py`). COPY cannot skip conflicts, so it runs in a savepoint: a batch
holding a request id that is already stored (a retry after a lost commit, a client
reusing its `X-Request-ID`) fails as a whole and goes again through a temporary table
and `INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING`, which keeps the record
that was stored first.

Reading streams: records come in chunks, through a server-side cursor on PostgreSQL,
and `LogReader.labels_for` looks labels up per chunk, so memory stays bounded whatever
the size of the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from contender.errors import ConfigError, StoreUnavailable
from contender.jsonio import dumps
from contender.predictions.record import Feedback, JsonValue, PredictionRecord
from contender.predictions.schema import feedback_table, predictions_table, upgrade

__all__ = [
    "LogReader",
    "PredictionStore",
    "SqlPredictionStore",
    "feedback_table",
    "predictions_table",
]

READ_CHUNK = 5000
"""Records per chunk, and per fetch of a server-side cursor, when reading the log."""


class PredictionStore(Protocol):
    def append_many(self, records: Sequence[PredictionRecord]) -> None:
        """Store the records; a request id already stored is left as it is."""
        ...

    def add_feedback(self, items: Sequence[Feedback]) -> list[str]:
        """Store labels (a later label for the same row wins); returns the request ids that
        are not in the log (yet): their labels are kept, and join once the record lands."""
        ...

    def iter_records(self, since: datetime | None = None) -> Iterator[dict[str, JsonValue]]:
        """Records in timestamp order, as flat dicts with the fields of SPEC section 4."""
        ...

    def labels(self) -> dict[tuple[str, int], JsonValue]:
        """Every stored label by (request id, row)."""
        ...

    def close(self) -> None: ...


def _check_url(url: str) -> sa.URL:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as error:
        raise ConfigError(f"log store {url!r} is not a database URL") from error
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"log store {url!r}: use sqlite:///path.db or postgresql://...")
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _to_json(value: Any) -> str:
    return dumps(value).decode()


def _from_json(value: Any) -> Any:
    # SQLite gives a JSON column NUMERIC affinity: a stored `1` comes back as the integer.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _since_bound(since: datetime) -> str:
    # Stored timestamps are UTC ISO strings with microseconds; without a zone suffix the
    # bound sorts right against both "...+00:00" and "...Z" spellings.
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _enable_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets `contender report` read while the service writes, and survives crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Long enough for workers taking turns at the one writer lock, short enough that a
    # file locked by someone else is an outage the log writer buffers and spills through.
    cursor.execute("PRAGMA busy_timeout=3000")
    cursor.close()


class SqlPredictionStore:
    """SQLite or PostgreSQL through SQLAlchemy Core; opening creates or migrates the tables."""

    def __init__(self, url: str) -> None:
        parsed = _check_url(url)
        self._dialect = parsed.get_backend_name()
        if self._dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = sa.create_engine(
            parsed, pool_pre_ping=True, json_serializer=_to_json, json_deserializer=_from_json
        )
        if self._dialect == "sqlite":
            sa.event.listen(self._engine, "connect", _enable_wal)
        upgrade(self._engine)

    @property
    def engine(self) -> sa.Engine:
        """For readers and writers of tables beside the log (`replay`)."""
        return self._engine

    def _insert(self, table: sa.Table) -> Any:
        dialect_insert = sqlite.insert if self._dialect == "sqlite" else postgresql.insert
        return dialect_insert(table)

    def append_many(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        if self._dialect == "postgresql":
            self._copy_many(records)
        else:
            self._insert_many(records)

    def _insert_many(self, records: Sequence[PredictionRecord]) -> None:
        """`INSERT ... ON CONFLICT DO NOTHING` as an executemany: SQLite's path, and
        PostgreSQL's before COPY (`bench/pg_inserts.py` still measures it there)."""
        statement = self._insert(predictions_table).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
        with self._engine.begin() as connection:
            connection.execute(statement, [record.to_row() for record in records])

    def _copy_many(self, records: Sequence[PredictionRecord]) -> None:
        """PostgreSQL: one binary COPY in a savepoint; a batch that meets a stored request
        id goes again through a temporary table and `ON CONFLICT DO NOTHING`."""
        from psycopg.errors import UniqueViolation

        rows = [_copy_row(record.to_row()) for record in records]
        with self._engine.begin() as connection:
            driver: Any = connection.connection.driver_connection
            try:
                with connection.begin_nested():
                    _copy(driver, predictions_table.name, rows)
                return
            except UniqueViolation:
                pass  # rolled back to the savepoint: nothing of the batch is stored yet
            with driver.cursor() as cursor:
                cursor.execute(_create_staging(driver.info.server_version))
                _copy(driver, _STAGING, rows)
                cursor.execute(_INSERT_FROM_STAGING)

    def add_feedback(self, items: Sequence[Feedback]) -> list[str]:
        """`StoreUnavailable` when the database cannot take them now (locked, down)."""
        ids = sorted({item.request_id for item in items})
        rows = [
            {
                "request_id": i.request_id,
                "row": i.row,
                "label": i.label,
                "received_at": i.received_at,
            }
            for i in items
        ]
        try:
            with self._engine.begin() as connection:
                known = self._known_ids(connection, ids)
                if rows:
                    statement = self._insert(feedback_table)
                    statement = statement.on_conflict_do_update(
                        index_elements=["request_id", "row"],
                        set_={
                            "label": statement.excluded.label,
                            "received_at": statement.excluded.received_at,
                        },
                    )
                    connection.execute(statement, rows)
        except sa.exc.OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            raise StoreUnavailable(
                f"the log store cannot take labels now ({reason}); nothing was stored, retry"
            ) from error
        return [request_id for request_id in ids if request_id not in known]

    @staticmethod
    def _known_ids(connection: sa.Connection, ids: list[str]) -> set[str]:
        known: set[str] = set()
        column = predictions_table.c.request_id
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            known.update(connection.execute(sa.select(column).where(column.in_(chunk))).scalars())
        return known

    def iter_records(self, since: datetime | None = None) -> Iterator[dict[str, JsonValue]]:
        with self.reader() as reader:
            yield from reader.records(since)

    def labels(self) -> dict[tuple[str, int], JsonValue]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(feedback_table)).all()
        return {(row.request_id, row.row): row.label for row in rows}

    @contextmanager
    def reader(self, *, snapshot: bool = False) -> Iterator[LogReader]:
        """One connection to read records and labels with. `snapshot`: every read sees
        the same state of the store (one REPEATABLE READ transaction on PostgreSQL, one
        read transaction on SQLite), for a reader that goes over the log twice."""
        with self._engine.connect() as connection:
            if snapshot and self._dialect == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            elif snapshot:
                # pysqlite begins no transaction for a SELECT; in WAL mode this one keeps
                # the snapshot of its first read until the connection rolls it back.
                connection.exec_driver_sql("BEGIN")
            yield LogReader(connection)

    def close(self) -> None:
        self._engine.dispose()


class LogReader:
    """Records and labels, read over one connection (`SqlPredictionStore.reader`)."""

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    def records(self, since: datetime | None = None) -> Iterator[dict[str, JsonValue]]:
        """Records in timestamp order as flat dicts (SPEC section 4). `yield_per`
        streams: on PostgreSQL through a server-side cursor, `READ_CHUNK` rows a fetch."""
        query = sa.select(predictions_table).order_by(predictions_table.c.timestamp)
        if since is not None:
            query = query.where(predictions_table.c.timestamp >= _since_bound(since))
        stream = {"yield_per": READ_CHUNK}  # this statement's, not the connection's
        with self._connection.execute(query, execution_options=stream) as result:
            for row in result.mappings():
                # Keys come back as SQLAlchemy's `quoted_name`; JSON encoders want plain str.
                yield {str(key): value for key, value in row.items()}

    def record_chunks(
        self, since: datetime | None = None, size: int | None = None
    ) -> Iterator[list[dict[str, JsonValue]]]:
        """`records`, `size` (default `READ_CHUNK`) at a time. Holding a chunk of nested
        values alive makes Python's cyclic garbage collector slow: a long reader pauses
        it (`export.paused_gc`)."""
        records = self.records(since)
        while chunk := list(islice(records, size or READ_CHUNK)):
            yield chunk

    def labels_for(self, request_ids: Iterable[str]) -> dict[tuple[str, int], JsonValue]:
        """The stored labels of these requests, by (request id, row): on PostgreSQL in
        one query (`= ANY(array)`, an index probe per id), on SQLite `IN` lists of
        `_LOOKUP_CHUNK` (an `IN` of thousands of parameters costs PostgreSQL more to
        parse and plan than to run). The statements are built once: one built per call
        would hold its ids in a reference cycle until the garbage collector runs."""
        ids = sorted(set(request_ids))
        if self._connection.dialect.name == "postgresql":
            batches = [ids] if ids else []
            query = _LABELS_OF_ANY
        else:
            batches = [ids[i : i + _LOOKUP_CHUNK] for i in range(0, len(ids), _LOOKUP_CHUNK)]
            query = _LABELS_OF_IN
        found: dict[tuple[str, int], JsonValue] = {}
        for batch in batches:
            for row in self._connection.execute(query, {"ids": batch}):
                found[(row.request_id, row.row)] = row.label
        return found


_LABELS_OF_ANY = sa.select(feedback_table).where(
    feedback_table.c.request_id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
)
_LABELS_OF_IN = sa.select(feedback_table).where(
    feedback_table.c.request_id.in_(sa.bindparam("ids", expanding=True))
)
_LOOKUP_CHUNK = 500

# COPY's binary format takes each value in its column type's wire format. A json value
# is its text, so the JSON columns get orjson's bytes as they are ("bytea" here only
# means "send these bytes": the server still parses and checks the JSON). None in a
# JSON column is stored as JSON `null`, as SQLAlchemy's JSON type stores it.
_COPY_COLUMNS = tuple(column.name for column in predictions_table.columns)
_JSON_COLUMNS = frozenset(
    column.name for column in predictions_table.columns if isinstance(column.type, sa.JSON)
)


def _copy_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, sa.JSON):
        return "bytea"
    if isinstance(column.type, sa.Boolean):
        return "bool"
    if isinstance(column.type, sa.Float):
        return "float8"
    if isinstance(column.type, sa.Integer):
        return "int4"
    return "text"


_COPY_TYPES = [_copy_type(column) for column in predictions_table.columns]
_COLUMN_LIST = ", ".join(f'"{name}"' for name in _COPY_COLUMNS)
_STAGING = "contender_incoming"


def _create_staging(server_version: int) -> str:
    # INCLUDING COMPRESSION (PostgreSQL 14+): the values are compressed once, with the
    # log's lz4, and moved into `predictions` as they are.
    like = (
        "LIKE predictions INCLUDING COMPRESSION" if server_version >= 140000 else "LIKE predictions"
    )
    return f"CREATE TEMPORARY TABLE {_STAGING} ({like}) ON COMMIT DROP"


_INSERT_FROM_STAGING = (
    f"INSERT INTO predictions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_STAGING} "
    "ON CONFLICT (request_id) DO NOTHING"
)


def _copy_row(row: dict[str, JsonValue]) -> tuple[Any, ...]:
    return tuple(dumps(row[name]) if name in _JSON_COLUMNS else row[name] for name in _COPY_COLUMNS)


def _copy(driver: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Binary COPY of `rows` (values in `_COPY_COLUMNS` order) on a psycopg connection."""
    statement = f"COPY {table} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(_COPY_TYPES)
        for row in rows:
            copy.write_row(row)
