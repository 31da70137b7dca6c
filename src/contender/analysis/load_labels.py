"""The labels of a report's records, read from the store's feedback table.

Labels stream `FETCH_SIZE` at a time and are placed into the rows in one lookup at the
end (`store_labels`), with each label's delay (from the request's timestamp to the
label's arrival at `/feedback`). `orphan_label_count` counts labels for request ids no
record has.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from contender.analysis.data import FloatArray, IntArray, LoggedRows
from contender.analysis.labels import values_to_floats
from contender.analysis.sql_rows import as_text, iso_to_datetime64, parse_json_column, stream_tuples
from contender.predictions.store import feedback_table, predictions_table

_P = predictions_table.c


def _label_query(where: list[Any], with_arrival: bool) -> sa.Select[Any]:
    feedback = feedback_table.c
    arrival: list[sa.ColumnElement[Any]] = (
        [_P.timestamp, feedback.received_at] if with_arrival else [sa.null(), sa.null()]
    )
    return (
        sa.select(feedback.request_id, feedback.row, as_text(feedback.label), *arrival)
        .join(predictions_table, _P.request_id == feedback.request_id)
        .where(*where)
    )


def _seconds_between(starts: tuple[Any, ...], ends: tuple[Any, ...]) -> FloatArray:
    """Seconds between ISO-8601 UTC timestamps (NaN where either is missing)."""
    elapsed = iso_to_datetime64(ends) - iso_to_datetime64(starts)
    seconds = elapsed.astype("timedelta64[us]").astype(np.float64) / 1e6
    seconds[np.isnat(elapsed)] = np.nan  # NaT casts to the smallest int64, not to NaN
    return seconds


def orphan_label_count(connection: sa.Connection) -> int:
    """Labels for request ids no record has (a typo, or a request that was never logged)."""
    feedback = feedback_table.c
    has_record = sa.exists().where(_P.request_id == feedback.request_id)
    query = sa.select(sa.func.count()).select_from(feedback_table).where(~has_record)
    return int(connection.execute(query).scalar() or 0)


def store_labels(
    connection: sa.Connection, where: list[Any], rows: LoggedRows
) -> tuple[FloatArray, FloatArray]:
    """`rows.labels` with the stored labels written in, and per row the label's delay
    (seconds from the request to its arrival): `labels.place_labels`, with the
    labels fetched and parsed chunk by chunk, then placed in one lookup. (Looked up per
    chunk, pandas bisects a sorted index at a cost of the whole index per call; one
    large lookup hashes.) Both sides are object indexes: pandas' own strings would
    copy every request id of the log into Arrow memory first."""
    ids: list[str] = []
    numbers: list[IntArray] = []
    values: list[FloatArray] = []
    delays: list[FloatArray] = []
    stored = {column["name"] for column in sa.inspect(connection).get_columns("feedback")}
    query = _label_query(where, with_arrival="received_at" in stored)
    with closing(stream_tuples(connection, query)) as chunks:
        for fetched in chunks:
            chunk_ids, chunk_numbers, texts, timestamps, arrivals = zip(*fetched, strict=True)
            ids.extend(chunk_ids)
            numbers.append(np.asarray(chunk_numbers, dtype=np.int64))
            values.append(values_to_floats(parse_json_column(texts), "label in the store"))
            delays.append(_seconds_between(timestamps, arrivals))
    no_delays = np.full(len(rows.labels), np.nan)
    if not ids:
        return rows.labels, no_delays
    request_index = pd.Index(rows.request_ids, dtype=object, copy=False)
    found = request_index.get_indexer(pd.Index(ids, dtype=object))
    del ids
    row_numbers, label_values = np.concatenate(numbers), np.concatenate(values)
    label_delays = np.concatenate(delays)
    counts = np.diff(rows.row_offsets)
    known = (found >= 0) & ~np.isnan(label_values)
    found, row_numbers = found[known], row_numbers[known]
    label_values, label_delays = label_values[known], label_delays[known]
    inside = (row_numbers >= 0) & (row_numbers < counts[found])
    labels = rows.labels.copy()
    at = rows.row_offsets[found[inside]] + row_numbers[inside]
    labels[at] = label_values[inside]
    no_delays[at] = label_delays[inside]
    return labels, no_delays
