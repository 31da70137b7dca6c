"""Ground truth: labels from the store's feedback table and from a `--labels` CSV file.

A CSV file has a header and either `request_id,label` (each label is row 0 of a one-row
request) or `request_id,row,label`. Labels are numbers; `true`/`false` read as 1/0; a
blank label means "no label". CSV labels override stored labels for the same
(request, row); a later line overrides an earlier one. Ids the log does not know (another
model, outside `--since`) are ignored.

Failure modes (`ConfigError`, one line): the file is missing or not CSV, a column is
missing, a row number or label is not a number, or a two-column file labels a request
that has several rows (which row it means is unknowable).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contender.analysis.data import FloatArray, IntArray, LoggedRows
from contender.errors import ConfigError

_BOOLEAN_WORDS = {"true": 1.0, "false": 0.0}


@dataclass(frozen=True)
class LabelTable:
    """Labels read from a CSV file; `rows` is None for the `request_id,label` form."""

    source: str
    request_ids: pd.Index[Any]
    rows: IntArray | None
    values: FloatArray


def _to_float(value: Any, what: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, list) and len(value) == 1:
        return _to_float(value[0], what)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[word]
        try:
            return float(word)
        except ValueError:
            pass
    raise ConfigError(f"{what} {value!r} is not a number (labels must be numeric or 0/1)")


def values_to_floats(values: list[Any], what: str) -> FloatArray:
    """JSON label values -> floats; None -> NaN; anything non-numeric -> ConfigError."""
    try:
        array = np.asarray(values, dtype=np.float64)
        if array.ndim == 1:
            return array
    except (TypeError, ValueError):
        pass  # the slow path names the offending value
    return np.asarray([_to_float(value, what) for value in values], dtype=np.float64)


def place_labels(
    rows: LoggedRows, request_ids: pd.Index[Any], row_numbers: IntArray, values: FloatArray
) -> FloatArray:
    """A copy of `rows.labels` with the given labels written in; NaN values are skipped."""
    request_index = pd.Index(rows.request_ids).get_indexer(request_ids)
    counts = np.diff(rows.row_offsets)
    known = (request_index >= 0) & ~np.isnan(values)
    request_index, row_numbers, values = request_index[known], row_numbers[known], values[known]
    inside = (row_numbers >= 0) & (row_numbers < counts[request_index])
    positions = rows.row_offsets[request_index[inside]] + row_numbers[inside]
    labels = rows.labels.copy()
    labels[positions] = values[inside]
    return labels


def _read_frame(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError as error:
        raise ConfigError(f"labels file not found: {path}") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "empty file"
        raise ConfigError(f"labels file {path} is not a readable CSV: {reason}") from error
    except OSError as error:
        raise ConfigError(f"labels file {path} cannot be read: {error.strerror}") from error
    frame.columns = [str(column).strip().lower() for column in frame.columns]
    if not {"request_id", "label"} <= set(frame.columns):
        raise ConfigError(
            f"labels file {path} needs a header request_id,label (or request_id,row,label)"
        )
    return frame


def _parse_column(texts: pd.Series[str], path: Path, column: str) -> FloatArray:
    stripped = texts.str.strip()
    lowered = stripped.str.lower()
    numbers = pd.to_numeric(stripped.where(~lowered.isin(list(_BOOLEAN_WORDS))), errors="coerce")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    for word, number in _BOOLEAN_WORDS.items():
        values[(lowered == word).to_numpy()] = number
    bad = np.isnan(values) & (stripped != "").to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"labels file {path}, line {first + 2}: {column} {texts.iloc[first]!r} is not a number"
        )
    return values


def read_labels_csv(path: Path) -> LabelTable:
    """Parse and check a labels file (see the module docstring)."""
    frame = _read_frame(path)
    values = _parse_column(frame["label"], path, "label")
    rows: IntArray | None = None
    if "row" in frame.columns:
        row_values = _parse_column(frame["row"], path, "row")
        if (np.isnan(row_values) | (row_values != np.round(row_values))).any():
            raise ConfigError(f"labels file {path}: every row must be a whole number")
        rows = row_values.astype(np.int64)
    ids = pd.Index(frame["request_id"].str.strip().to_numpy(dtype=object))
    return LabelTable(str(path), ids, rows, values)


def apply_label_table(rows: LoggedRows, table: LabelTable) -> LoggedRows:
    """`rows` with the table's labels written over the stored ones."""
    row_numbers = table.rows
    if row_numbers is None:
        _check_one_row_requests(rows, table)
        row_numbers = np.zeros(len(table.values), dtype=np.int64)
    return rows.with_labels(place_labels(rows, table.request_ids, row_numbers, table.values))


def _check_one_row_requests(rows: LoggedRows, table: LabelTable) -> None:
    request_index = pd.Index(rows.request_ids).get_indexer(table.request_ids)
    counts = np.diff(rows.row_offsets)
    known = request_index >= 0
    multi = known & (counts[np.where(known, request_index, 0)] != 1)
    if multi.any():
        first = int(np.flatnonzero(multi)[0])
        raise ConfigError(
            f"labels file {table.source}: request {table.request_ids[first]!r} has "
            f"{counts[request_index[first]]} rows; use the columns request_id,row,label"
        )
