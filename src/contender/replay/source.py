"""The records a replay scores, and where its results go: the store's `replays` table.

Which records: those of the model (at or after `since`), oldest first, the first `limit`
of them; of those, the ones version V has no replayed row for yet. So a second run
scores nothing, and a run that was interrupted picks up the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from contender.analysis.load import since_bound
from contender.analysis.sql_rows import fetch_tuples, parse_json_column
from contender.predictions.record import JsonValue
from contender.predictions.schema import predictions_table, replays_table
from contender.protocol import REDACTED_PREFIX

_P = predictions_table.c
_R = replays_table.c

# Rows looked at to name the redacted columns (one redacted record is enough to refuse).
_REDACTION_SAMPLE = 50


@dataclass(frozen=True, slots=True)
class LoggedInput:
    request_id: str
    inputs: dict[str, JsonValue] | None
    """`{"columns": [...], "data": [[...]]}` as logged (None if the record has none)."""


@dataclass(frozen=True, slots=True)
class ReplayedRow:
    request_id: str
    predictions: JsonValue
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Selection:
    model: str
    version: str
    since: datetime | None = None
    limit: int | None = None


class ReplaySource:
    def __init__(self, engine: sa.Engine, selection: Selection) -> None:
        self._engine = engine
        self.selection = selection

    def _chosen(self) -> Any:
        """The records in scope, as a subquery (request id and timestamp)."""
        where = [_P.model_name == self.selection.model]
        if self.selection.since is not None:
            where.append(_P.timestamp >= since_bound(self.selection.since))
        query = (
            sa.select(_P.request_id, _P.timestamp)
            .where(*where)
            .order_by(_P.timestamp, _P.request_id)
        )
        if self.selection.limit is not None:
            query = query.limit(self.selection.limit)
        return query.subquery("chosen")

    def _not_replayed(self, chosen: Any) -> sa.ColumnElement[bool]:
        done = sa.exists().where(
            _R.request_id == chosen.c.request_id, _R.version == self.selection.version
        )
        return ~done

    def counts(self) -> tuple[int, int]:
        """(records in scope, of them not replayed yet)."""
        chosen = self._chosen()
        with self._engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(chosen)).scalar()
            pending = connection.execute(
                sa.select(sa.func.count()).select_from(chosen).where(self._not_replayed(chosen))
            ).scalar()
        return int(total or 0), int(pending or 0)

    def redacted_columns(self) -> list[str]:
        """Input columns stored as keyed hashes in the records in scope: their values are
        gone, so no version can be scored on them."""
        chosen = self._chosen()
        inputs = sa.cast(_P.inputs, sa.Text)
        query = (
            sa.select(inputs)
            .join(chosen, chosen.c.request_id == _P.request_id)
            .where(inputs.like(f'%"{REDACTED_PREFIX}%'))
            .limit(_REDACTION_SAMPLE)
        )
        with self._engine.connect() as connection:
            texts = connection.execute(query).scalars().all()
        found: set[str] = set()
        for text in texts:
            found.update(_hashed_columns(orjson.loads(text)))
        return sorted(found)

    def pending(self, chunk: int) -> Iterator[list[LoggedInput]]:
        """The records not replayed yet, `chunk` at a time, oldest first. Each chunk is a
        query of its own, after the last one's (timestamp, request id): one long read
        would hold its snapshot for the whole replay, and meanwhile SQLite's WAL file
        grows with every row written (about 140 MB per million) and PostgreSQL's VACUUM
        waits."""
        chosen = self._chosen()
        key = sa.tuple_(chosen.c.timestamp, chosen.c.request_id)
        query = (
            sa.select(chosen.c.request_id, chosen.c.timestamp, sa.cast(_P.inputs, sa.Text))
            .join(predictions_table, _P.request_id == chosen.c.request_id)
            .where(self._not_replayed(chosen))
            .order_by(chosen.c.timestamp, chosen.c.request_id)
            .limit(chunk)
        )
        after: tuple[str, str] | None = None
        while True:
            page = query if after is None else query.where(key > sa.tuple_(*after))
            with self._engine.connect() as connection:
                fetched = fetch_tuples(connection, page)
            if not fetched:
                return
            ids, timestamps, texts = zip(*fetched, strict=True)
            after = (timestamps[-1], ids[-1])
            yield [
                LoggedInput(request_id, inputs if isinstance(inputs, dict) else None)
                for request_id, inputs in zip(ids, parse_json_column(texts), strict=True)
            ]

    def store(self, rows: Sequence[ReplayedRow], replayed_at: str) -> None:
        """Idempotent: a row already stored for this version is left as it is."""
        if not rows:
            return
        values = [
            {
                "request_id": row.request_id,
                "version": self.selection.version,
                "model_name": self.selection.model,
                "predictions": row.predictions,
                "latency_ms": row.latency_ms,
                "error": row.error,
                "replayed_at": replayed_at,
            }
            for row in rows
        ]
        dialect = self._engine.dialect.name
        insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(replays_table)
        statement = insert.on_conflict_do_nothing(index_elements=["request_id", "version"])
        with self._engine.begin() as connection:
            connection.execute(statement, values)


def _hashed_columns(inputs: Any) -> set[str]:
    if not isinstance(inputs, dict):
        return set()
    columns, data = inputs.get("columns"), inputs.get("data")
    if not isinstance(columns, list) or not isinstance(data, list):
        return set()
    if not columns:  # logged as sent (not a table): redacted entries are object keys
        return _hashed_keys(data)
    found: set[str] = set()
    for row in data:
        if isinstance(row, list):
            found.update(
                str(name)
                for name, cell in zip(columns, row, strict=False)
                if isinstance(cell, str) and cell.startswith(REDACTED_PREFIX)
            )
    return found


def _hashed_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {
            str(key)
            for key, item in value.items()
            if isinstance(item, str) and item.startswith(REDACTED_PREFIX)
        }
        for item in value.values():
            found |= _hashed_keys(item)
        return found
    if isinstance(value, list):
        return set().union(*(_hashed_keys(item) for item in value)) if value else set()
    return set()
