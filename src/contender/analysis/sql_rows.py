"""Reading many rows fast: plain DB-API tuples, streamed, and JSON parsed per column.

SQLAlchemy's Row objects cost about a second per million; these helpers compile a query
once and read tuples from the driver's cursor (a server-side cursor on PostgreSQL), and
parse a whole column of JSON texts in one `orjson` call.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from numpy.typing import NDArray


def as_text(column: sa.Column[Any]) -> sa.ColumnElement[str]:
    """A JSON column as text, so SQLAlchemy does not parse a million values one by one."""
    return sa.cast(column, sa.Text)


FETCH_SIZE = 10_000
"""Records (or labels) per chunk. 10,000 100-row records are about 100 MB of JSON text."""

_cursor_names = itertools.count()


def _compiled(connection: sa.Connection, query: sa.Select[Any]) -> tuple[str, Any]:
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    params: Any = compiled.params
    if compiled.positional:
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    return str(compiled), params


def fetch_tuples(connection: sa.Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """Plain DB-API tuples: SQLAlchemy's Row objects cost about a second per million.
    For small results; `stream_tuples` for the records and labels."""
    statement, params = _compiled(connection, query)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def stream_tuples(
    connection: sa.Connection, query: sa.Select[Any], size: int | None = None
) -> Generator[Sequence[tuple[Any, ...]], None, None]:
    """Plain DB-API tuples, `size` at a time. On PostgreSQL from a server-side cursor
    (psycopg's named cursor: DECLARE, then FETCH), so the driver never holds more than
    one chunk either; other queries may run on the connection between chunks."""
    statement, params = _compiled(connection, query)
    if connection.dialect.name == "postgresql":
        # A cursor is planned for its first rows (cursor_tuple_fraction 0.1), and
        # for the ORDER BY request_id that means walking the primary key: the table
        # read in random order. Every row is read here, so plan for all of them.
        connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        connection.exec_driver_sql("SET LOCAL enable_indexscan = off")
        cursor = connection.connection.cursor(f"contender_load_{next(_cursor_names)}")
    else:
        cursor = connection.connection.cursor()
    try:
        cursor.execute(statement, params)
        if connection.dialect.name == "postgresql":  # planned: back to the defaults
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction TO DEFAULT")
            connection.exec_driver_sql("SET LOCAL enable_indexscan TO DEFAULT")
        while chunk := cursor.fetchmany(size or FETCH_SIZE):
            yield chunk
    finally:
        cursor.close()


def parse_json_column(texts: tuple[str | None, ...] | list[str | None]) -> list[Any]:
    """JSON texts (SQL NULL as None) -> values, in one parser call."""
    joined = ",".join("null" if text is None else text for text in texts)
    return list(orjson.loads(f"[{joined}]"))


def iso_to_datetime64(texts: Sequence[str | None]) -> NDArray[np.datetime64]:
    """ISO-8601 timestamps as stored (`...+00:00`, `...Z`, with or without fractions) ->
    UTC datetime64[us], NaT for None or text that is no timestamp."""
    parsed = pd.to_datetime(
        pd.Series(np.asarray(texts, dtype=object)), utc=True, format="ISO8601", errors="coerce"
    )
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
