"""`report --replay V`: the replayed rows as `LoggedRows`, V in the challenger's place.

Rows compared: exactly the records `contender replay` scored with V (its `replays`
rows), against the champion that served them, as logged. Replayed records of more than
one champion version (a promotion happened in the window) are narrowed to the latest
champion's and the rest counted in `n_requests_other_versions`, as the live report does
with older pairs. V's arm: its predictions and errors from the replay (a record whose
inputs did not fit V's signature counts as a V failure), its latency the offline batch
time, each request's share of its batch; `fallback` is false everywhere (V answered no
one). The records are read and parsed by the same code as the live report.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from contender.analysis.data import LoggedRows
from contender.analysis.load import (
    VersionPair,
    arm_select,
    build_rows,
    masked_url,
    model_filter,
    open_engine,
    stored_columns,
    weight_column,
)
from contender.analysis.load_labels import store_labels
from contender.analysis.sql_rows import fetch_tuples, stream_tuples
from contender.errors import ConfigError
from contender.predictions.export import paused_gc
from contender.predictions.schema import feedback_table, predictions_table, replays_table

_P = predictions_table.c
_R = replays_table.c


def load_replayed_rows(
    url: str, model: str, version: str, since: datetime | None = None
) -> LoggedRows:
    engine = open_engine(url)
    try:
        with engine.connect() as connection, paused_gc():
            return _load(connection, model, version, since)
    except sa.exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise ConfigError(f"cannot read the log store {masked_url(url)!r}: {reason}") from error
    finally:
        engine.dispose()


def _load(
    connection: sa.Connection, model: str, version: str, since: datetime | None
) -> LoggedRows:
    inspector = sa.inspect(connection)
    # Correlated to the record only: the record query also selects from `replays`.
    replayed = (
        sa.exists()
        .where(_R.request_id == _P.request_id, _R.version == version)
        .correlate_except(replays_table)
    )
    where: list[Any] = [*model_filter(model, since), replayed]
    groups = []
    if inspector.has_table(replays_table.name):
        query = (
            sa.select(_P.champion_version, sa.func.count(), sa.func.max(_P.timestamp))
            .where(*where)
            .group_by(_P.champion_version)
        )
        groups = fetch_tuples(connection, query)
    if not groups:
        raise ConfigError(
            f"no replayed records of {model!r} version {version}: run "
            f"`contender replay --model {model} --version {version}` first"
        )
    champion, n_latest, _ = max(groups, key=lambda group: group[2])
    total = sum(int(group[1]) for group in groups)
    if champion == version:
        raise ConfigError(f"version {version} is the champion of those records: nothing to compare")
    champion_filter = (
        _P.champion_version.is_(None) if champion is None else _P.champion_version == champion
    )
    where.append(champion_filter)
    pair = VersionPair(champion, version, total - int(n_latest))
    joined = predictions_table.join(
        replays_table, sa.and_(_R.request_id == _P.request_id, _R.version == version)
    )
    order = (
        sa.literal_column("predictions.rowid")
        if connection.dialect.name == "sqlite"
        else _P.request_id
    )
    query = (
        sa.select(
            _P.request_id,
            _P.served_by,
            sa.false(),
            _P.timestamp,
            weight_column(stored_columns(connection)),
            *arm_select("champion", stored_columns(connection)),
            sa.cast(_R.predictions, sa.Text),
            _R.latency_ms,
            _R.error.is_not(None),
            sa.null(),
            sa.true(),
        )
        .select_from(joined)
        .where(*where)
        .order_by(order)
    )
    with closing(stream_tuples(connection, query)) as chunks:
        rows = build_rows(connection, model, pair, chunks)
    if inspector.has_table(feedback_table.name):
        rows = rows.with_labels(*store_labels(connection, where, rows))
    return rows
