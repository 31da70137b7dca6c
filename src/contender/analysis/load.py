"""Read one model's prediction log and labels from the store, fast, as `LoggedRows`.

The store's own `iter_records` builds a dict per record, which is too slow for a million
records; this reader asks SQL for only the columns the report needs, gets the JSON
columns back as text and parses them in one `orjson` call per column and chunk.

It streams: records and labels come `FETCH_SIZE` at a time (a server-side cursor on
PostgreSQL, `fetchmany` on SQLite), and each chunk becomes numpy arrays before the next
is fetched, so memory is bounded by those arrays, never by the JSON texts of the log.
On PostgreSQL the order (by request id, so that a seeded report is reproducible) is a
sort of the selected rows: scanning the primary key instead would read the table in
random order (request ids are random), two to three times slower at a million records
(5 s against 2 s here).

Which records: those of `model` (since `since`) whose champion version is the latest one
that ran against a challenger, and whose challenger is that same latest challenger or was
not invoked. After a promotion the log holds records of an older pair; mixing two pairs
would compare models that are not the ones a verdict is about, so older pairs are left
out and counted in `n_requests_other_versions`. A skipped arm keeps the version that
would have run, so skipped requests belong to their pair; the arm counts as not invoked
on them. Stores are read as they are, never migrated: one written by 0.1.0 has no skip
columns, and its records read as not skipped.

Failure modes, each a `ConfigError` with a one-line message: the SQLite file does not
exist (it is never created here), the database is unreachable or has no prediction log,
no record matches, a prediction or label is not a number.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import chain, compress
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
import sqlalchemy as sa
from numpy.typing import NDArray

from contender.analysis.data import (
    ArmLog,
    BoolArray,
    FloatArray,
    IntArray,
    LoggedRows,
    is_not_none,
)
from contender.analysis.data import row_offsets_from_counts as _offsets
from contender.analysis.load_labels import orphan_label_count, store_labels
from contender.analysis.sql_rows import (
    as_text,
    fetch_tuples,
    iso_to_datetime64,
    parse_json_column,
    stream_tuples,
)
from contender.errors import ConfigError
from contender.predictions.export import paused_gc
from contender.predictions.store import feedback_table, predictions_table

_P = predictions_table.c


@dataclass(frozen=True)
class VersionGroup:
    """Records of one (champion, challenger) version pair, from a GROUP BY."""

    champion: str | None
    challenger: str | None
    n_records: int
    last_timestamp: str


@dataclass(frozen=True)
class VersionPair:
    champion: str | None
    challenger: str | None
    n_other: int
    """Records of the model that belong to other pairs."""


def parse_since(text: str) -> datetime:
    """An ISO date or datetime; naive values are taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise ConfigError(f"--since {text!r} is not an ISO date or datetime") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def since_bound(since: datetime) -> str:
    # Stored timestamps are UTC ISO strings with microseconds; without a zone suffix the
    # bound sorts right against both "...+00:00" and "...Z" spellings.
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def masked_url(url: str | sa.URL) -> str:
    """The URL for messages, password masked."""
    return sa.make_url(url).render_as_string(hide_password=True)


def open_engine(url: str) -> sa.Engine:
    """An engine for an existing store; refuses to create a missing SQLite file."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as error:
        raise ConfigError(f"log store {url!r} is not a database URL") from error
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"log store {masked_url(parsed)!r}: use sqlite:///path.db or postgresql://..."
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and not Path(parsed.database or "").is_file():
        raise ConfigError(f"log store not found: {parsed.database or url}")
    return sa.create_engine(parsed)


def choose_version_pair(groups: list[VersionGroup]) -> VersionPair:
    """The newest pair that ran with a challenger, else the newest champion alone."""
    with_challenger = [g for g in groups if g.challenger is not None]
    candidates = with_challenger or groups
    latest = max(candidates, key=lambda g: g.last_timestamp)
    challenger = latest.challenger if with_challenger else None
    kept = sum(
        g.n_records
        for g in groups
        if g.champion == latest.champion and g.challenger in (challenger, None)
    )
    total = sum(g.n_records for g in groups)
    return VersionPair(latest.champion, challenger, total - kept)


def model_filter(model: str, since: datetime | None) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_P.model_name == model]
    if since is not None:
        clauses.append(_P.timestamp >= since_bound(since))
    return clauses


def _pair_filter(pair: VersionPair) -> list[sa.ColumnElement[bool]]:
    champion = _P.champion_version
    same_champion = champion.is_(None) if pair.champion is None else champion == pair.champion
    challenger_ok: sa.ColumnElement[bool] = _P.challenger_version.is_(None)
    if pair.challenger is not None:
        challenger_ok = sa.or_(challenger_ok, _P.challenger_version == pair.challenger)
    return [same_champion, challenger_ok]


def _version_groups(connection: sa.Connection, where: list[Any]) -> list[VersionGroup]:
    query = (
        sa.select(
            _P.champion_version,
            _P.challenger_version,
            sa.func.count(),
            sa.func.max(_P.timestamp),
        )
        .where(*where)
        .group_by(_P.champion_version, _P.challenger_version)
    )
    return [VersionGroup(*row) for row in fetch_tuples(connection, query)]


class _ArmColumns(NamedTuple):
    """One arm's fetched columns, one entry per record, in `arm_select` order."""

    predictions: tuple[str | None, ...]
    latency_ms: tuple[float | None, ...]
    failed: tuple[bool, ...]
    """The error is not null."""
    skipped: tuple[str | None, ...]
    attempted: tuple[bool, ...] | None = None
    """The version or the error is not null (a skipped arm keeps its version, so this
    alone does not say the arm ran). None for the champion, which every record asked."""


def arm_select(arm: str, stored: set[str]) -> list[sa.ColumnElement[Any]]:
    version, error, skipped = (_P[f"{arm}_{name}"] for name in ("version", "error", "skipped"))
    columns: list[sa.ColumnElement[Any]] = [
        as_text(_P[f"{arm}_predictions"]),
        _P[f"{arm}_latency_ms"],
        error.is_not(None),
        skipped if skipped.name in stored else sa.null(),
    ]
    if arm == "challenger":  # for the champion, the column would cost 0.1 s per million
        columns.append(version.is_not(None) | error.is_not(None))
    return columns


def _record_query(dialect: str, where: list[Any], stored: set[str]) -> sa.Select[Any]:
    # A stable order makes a seeded report reproducible. SQLite's rowid order is free;
    # sorting by timestamp there would cost seconds per million records.
    order = sa.literal_column("rowid") if dialect == "sqlite" else _P.request_id
    return (
        sa.select(
            _P.request_id,
            _P.served_by,
            _P.fallback,
            _P.timestamp,
            weight_column(stored),
            *arm_select("champion", stored),
            *arm_select("challenger", stored),
        )
        .where(*where)
        .order_by(order)
    )


def weight_column(stored: set[str]) -> sa.ColumnElement[Any]:
    """The logged challenger weight (stores before 0.2.0 have none)."""
    return _P.challenger_weight if "challenger_weight" in stored else sa.null()


def stored_columns(connection: sa.Connection) -> set[str]:
    # The report never migrates a store, so columns added since 0.1.0 may be missing.
    return {column["name"] for column in sa.inspect(connection).get_columns(predictions_table.name)}


def _input_row_counts(connection: sa.Connection, request_ids: list[str]) -> dict[str, int]:
    """Rows per request from the logged inputs, for the few requests that need it."""
    counts: dict[str, int] = {}
    for start in range(0, len(request_ids), 500):
        chunk = request_ids[start : start + 500]
        query = sa.select(_P.request_id, as_text(_P.inputs)).where(_P.request_id.in_(chunk))
        for request_id, text in fetch_tuples(connection, query):
            inputs = orjson.loads(text) if text else None
            data = inputs.get("data") if isinstance(inputs, dict) else None
            counts[request_id] = len(data) if isinstance(data, list) else 0
    return counts


def list_lengths(parsed: list[Any]) -> IntArray:
    """Per request: the length of its prediction list, -1 when it is not a list."""
    return np.fromiter(
        (len(p) if type(p) is list else -1 for p in parsed), dtype=np.int64, count=len(parsed)
    )


def _row_score(row: Any) -> Any:
    if type(row) is list:
        return row[-1] if row else None
    return row


def flatten_scores(
    parsed: list[Any], counts: IntArray, lengths: IntArray | None = None
) -> tuple[FloatArray, bool]:
    """Row-aligned predictions per request -> one score per row (NaN where unusable).

    A list-valued row is a classifier's class probabilities: its score is the last
    (positive) column. A request whose predictions are not a list with one entry per
    input row gets NaN for all its rows.
    """
    aligned = (list_lengths(parsed) if lengths is None else lengths) == counts
    rows = list(chain.from_iterable(compress(parsed, aligned.tolist())))
    list_valued = any(type(row) is list for row in rows)
    scores = np.full(int(counts.sum()), np.nan)
    try:
        values = np.asarray([_row_score(row) for row in rows] if list_valued else rows, float)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            "predictions are not numeric: the report compares binary classifiers "
            "(probabilities or 0/1) and regressors"
        ) from error
    scores[np.repeat(aligned, counts)] = values
    return scores, list_valued


def _arm(
    version: str | None,
    columns: _ArmColumns,
    parsed: list[Any],
    lengths: IntArray,
    counts: IntArray,
) -> ArmLog:
    """One arm's arrays. It ran unless it was skipped (skipped work is no failure and not
    in the error rate's denominator); the challenger also only when it left a trace
    (version, error or predictions), since without one it was not invoked."""
    skipped = np.fromiter(columns.skipped, dtype=object, count=len(columns.skipped))
    logged_error = np.asarray(columns.failed, dtype=bool)
    if columns.attempted is None:
        attempted = np.ones(len(parsed), dtype=bool)
    else:
        attempted = np.asarray(columns.attempted, dtype=bool) | logged_error | (lengths >= 0)
    ran = attempted & ~is_not_none(skipped)
    failed = logged_error & ran
    scores, list_valued = flatten_scores(parsed, counts, lengths)
    # A failed or skipped arm's output is not trusted even if some was logged.
    scores[np.repeat(failed | ~ran, counts)] = np.nan
    return ArmLog(
        version=version,
        invoked=ran,
        failed=failed,
        predicted=ran & ~failed & (lengths >= 0),
        skipped=skipped,
        latency_ms=np.asarray(columns.latency_ms, dtype=np.float64),  # None -> NaN
        scores=scores,
        list_valued=list_valued,
    )


def _row_counts(
    connection: sa.Connection,
    request_ids: tuple[str, ...],
    champion_lengths: IntArray,
    challenger_lengths: IntArray,
) -> IntArray:
    """Rows per request. The predictions tell, except when neither model logged a list
    or the two disagree; those few requests are counted from their inputs."""
    counts = np.where(champion_lengths >= 0, champion_lengths, challenger_lengths)
    unknown = (counts < 0) | (
        (challenger_lengths >= 0)
        & (champion_lengths >= 0)
        & (champion_lengths != challenger_lengths)
    )
    if unknown.any():
        from_inputs = _input_row_counts(
            connection, [request_ids[i] for i in np.flatnonzero(unknown)]
        )
        for i in np.flatnonzero(unknown):
            counts[i] = from_inputs.get(request_ids[i], 0)
    return counts


class _Chunk(NamedTuple):
    """One fetched chunk of records as arrays: `build_rows` concatenates them."""

    request_ids: NDArray[np.object_]
    challenger_served: BoolArray
    fallback: BoolArray
    weights: FloatArray
    times: NDArray[np.datetime64]
    counts: IntArray
    champion: ArmLog
    challenger: ArmLog


def _chunk_rows(connection: sa.Connection, pair: VersionPair, records: Sequence[Any]) -> _Chunk:
    request_ids, served_by, fallback, timestamps, weights, *arm_columns = zip(*records, strict=True)
    champion = _ArmColumns(*arm_columns[:4])  # the champion's has no `attempted`
    challenger = _ArmColumns(*arm_columns[4:])
    champion_parsed = parse_json_column(champion.predictions)
    challenger_parsed = parse_json_column(challenger.predictions)
    champion_lengths = list_lengths(champion_parsed)
    challenger_lengths = list_lengths(challenger_parsed)
    counts = _row_counts(connection, request_ids, champion_lengths, challenger_lengths)
    return _Chunk(
        request_ids=np.asarray(request_ids, dtype=object),
        challenger_served=np.asarray(served_by, dtype=object) == "challenger",
        fallback=np.asarray(fallback, dtype=bool),
        weights=np.asarray(weights, dtype=np.float64),  # None -> NaN
        times=iso_to_datetime64(timestamps),
        counts=counts,
        champion=_arm(pair.champion, champion, champion_parsed, champion_lengths, counts),
        challenger=_arm(pair.challenger, challenger, challenger_parsed, challenger_lengths, counts),
    )


def _joined_arms(arms: list[ArmLog]) -> ArmLog:
    return ArmLog(
        version=arms[0].version,
        invoked=np.concatenate([arm.invoked for arm in arms]),
        failed=np.concatenate([arm.failed for arm in arms]),
        predicted=np.concatenate([arm.predicted for arm in arms]),
        skipped=np.concatenate([arm.skipped for arm in arms]),
        latency_ms=np.concatenate([arm.latency_ms for arm in arms]),
        scores=np.concatenate([arm.scores for arm in arms]),
        list_valued=any(arm.list_valued for arm in arms),
    )


def build_rows(
    connection: sa.Connection, model: str, pair: VersionPair, chunks: Iterator[Sequence[Any]]
) -> LoggedRows:
    """Each chunk of fetched records becomes arrays before the next is fetched; the
    arrays are joined at the end (every per-chunk step is per request, or per row of a
    request, so the result is the one a single pass over all records gives)."""
    parts = [_chunk_rows(connection, pair, records) for records in chunks]
    if not parts:  # the version groups said there were records: a concurrent delete
        raise ConfigError(f"no logged records for model {model!r}")
    counts = np.concatenate([part.counts for part in parts])
    return LoggedRows(
        model=model,
        request_ids=np.concatenate([part.request_ids for part in parts]),
        challenger_served=np.concatenate([part.challenger_served for part in parts]),
        fallback=np.concatenate([part.fallback for part in parts]),
        row_offsets=_offsets(counts),
        labels=np.full(int(counts.sum()), np.nan),
        champion=_joined_arms([part.champion for part in parts]),
        challenger=_joined_arms([part.challenger for part in parts]),
        n_requests_other_versions=pair.n_other,
        challenger_weight=np.concatenate([part.weights for part in parts]),
        request_time=np.concatenate([part.times for part in parts]),
    )


def load_logged_rows(url: str, model: str, since: datetime | None = None) -> LoggedRows:
    """Read the model's records and stored labels (see the module docstring)."""
    engine = open_engine(url)
    try:
        # Millions of small lists and tuples made the cyclic collector rescan the heap
        # over and over (7x slower parsing); the reader creates no reference cycles.
        with engine.connect() as connection, paused_gc():
            return _load(connection, engine.dialect.name, model, since)
    except sa.exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise ConfigError(f"cannot read the log store {masked_url(url)!r}: {reason}") from error
    except sa.exc.ProgrammingError as error:
        raise ConfigError(f"log store {masked_url(url)!r} holds no prediction log") from error
    finally:
        engine.dispose()


def _load(
    connection: sa.Connection, dialect: str, model: str, since: datetime | None
) -> LoggedRows:
    if not sa.inspect(connection).has_table(predictions_table.name):
        raise ConfigError("the log store holds no prediction log (no `predictions` table)")
    where = model_filter(model, since)
    groups = _version_groups(connection, where)
    if not groups:
        window = f" since {since_bound(since)}" if since is not None else ""
        raise ConfigError(f"no logged records for model {model!r}{window}")
    pair = choose_version_pair(groups)
    where = [*where, *_pair_filter(pair)]
    query = _record_query(dialect, where, stored_columns(connection))
    with closing(stream_tuples(connection, query)) as chunks:  # closed on errors too
        rows = build_rows(connection, model, pair, chunks)
    if sa.inspect(connection).has_table(feedback_table.name):
        rows = rows.with_labels(*store_labels(connection, where, rows))
        rows = replace(rows, orphan_labels=orphan_label_count(connection))
    return rows
