"""Where prediction records and ground truth live.

`PredictionStore` is the role; `SqlPredictionStore` implements it with SQLAlchemy for
both the embedded SQLite default and PostgreSQL shared by many workers and replicas.
Inserts are idempotent on `request_id`, so a batch retried after a store outage
never doubles a record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from contender.errors import ConfigError
from contender.jsonio import dumps
from contender.predictions.record import Feedback, JsonValue, PredictionRecord
from contender.predictions.schema import feedback_table, predictions_table, upgrade

__all__ = ["PredictionStore", "SqlPredictionStore", "feedback_table", "predictions_table"]


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


def _enable_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets `contender report` read while the service writes, and survives crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
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

    def _insert(self, table: sa.Table) -> Any:
        dialect_insert = sqlite.insert if self._dialect == "sqlite" else postgresql.insert
        return dialect_insert(table)

    def append_many(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        statement = self._insert(predictions_table).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
        with self._engine.begin() as connection:
            connection.execute(statement, [record.to_row() for record in records])

    def add_feedback(self, items: Sequence[Feedback]) -> list[str]:
        ids = sorted({item.request_id for item in items})
        rows = [{"request_id": i.request_id, "row": i.row, "label": i.label} for i in items]
        with self._engine.begin() as connection:
            known = self._known_ids(connection, ids)
            if rows:
                statement = self._insert(feedback_table)
                statement = statement.on_conflict_do_update(
                    index_elements=["request_id", "row"], set_={"label": statement.excluded.label}
                )
                connection.execute(statement, rows)
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
        query = sa.select(predictions_table).order_by(predictions_table.c.timestamp)
        if since is not None:
            query = query.where(predictions_table.c.timestamp >= since.isoformat())
        with self._engine.connect() as connection:
            result = connection.execution_options(yield_per=5000).execute(query)
            for row in result.mappings():
                # Keys come back as SQLAlchemy's `quoted_name`; JSON encoders want plain str.
                yield {str(key): value for key, value in row.items()}

    def labels(self) -> dict[tuple[str, int], JsonValue]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(feedback_table)).all()
        return {(row.request_id, row.row): row.label for row in rows}

    def close(self) -> None:
        self._engine.dispose()
