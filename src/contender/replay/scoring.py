"""Score a batch of logged inputs with one loaded version, as the service would.

The logged rows of a batch become one frame per column layout and go through the
service's own parsing (`protocol.parse_document`: MLflow's schema enforcement and the
missing-value checks) and predict, once per batch rather than once per request. When a
batch is refused or its predict raises, each half is tried again, down to single
requests, so that only the ones that do not fit the version's signature (or break its
predict) carry an error.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np

from contender.errors import BadRequest
from contender.models import LoadedModel
from contender.protocol import parse_document, rows_of
from contender.replay.source import LoggedInput, ReplayedRow

Monotonic = Callable[[], float]


def score_batch(
    model: LoadedModel, batch: Sequence[LoggedInput], monotonic: Monotonic = time.perf_counter
) -> list[ReplayedRow]:
    """One row per logged input, in the batch's order."""
    by_layout: dict[tuple[str, ...], list[LoggedInput]] = defaultdict(list)
    results: dict[str, ReplayedRow] = {}
    last_columns: Any = None
    last_layout: tuple[str, ...] = ()
    for item in batch:
        # Records of a chunk nearly always share their column list: compare it with the
        # last one's (one C-level list comparison) rather than rebuild the names.
        columns = item.inputs.get("columns") if item.inputs is not None else None
        layout: tuple[str, ...] | None
        if last_layout and columns == last_columns and _has_rows(item):
            layout = last_layout
        else:
            layout = _layout(item)
            if layout is not None:
                last_columns, last_layout = columns, layout
        if layout is None:
            results[item.request_id] = _failed(item, "the record has no logged input rows")
        else:
            by_layout[layout].append(item)
    for columns, items in by_layout.items():
        for row in _score_layout(model, list(columns), items, monotonic):
            results[row.request_id] = row
    return [results[item.request_id] for item in batch]


def _has_rows(item: LoggedInput) -> bool:
    data = item.inputs.get("data") if item.inputs is not None else None
    return isinstance(data, list) and bool(data)


def _layout(item: LoggedInput) -> tuple[str, ...] | None:
    """The record's column names, None when it logged no rows of a table."""
    columns = item.inputs.get("columns") if item.inputs is not None else None
    if not isinstance(columns, list) or not columns or not _has_rows(item):
        return None
    return tuple(str(column) for column in columns)


def _score_layout(
    model: LoadedModel, columns: list[str], items: list[LoggedInput], monotonic: Monotonic
) -> list[ReplayedRow]:
    """All together; if refused, each half again, down to the requests at fault."""
    try:
        return _score_together(model, columns, items, monotonic)
    except BadRequest as error:
        if len(items) == 1:
            return [_failed(items[0], f"does not fit the signature: {error}")]
    except _PredictFailed as error:
        if len(items) == 1:
            return [_failed(items[0], str(error))]
    half = len(items) // 2
    return [
        *_score_layout(model, columns, items[:half], monotonic),
        *_score_layout(model, columns, items[half:], monotonic),
    ]


class _PredictFailed(Exception):
    pass


def _data(item: LoggedInput) -> list[Any]:
    assert item.inputs is not None  # `_layout` kept only records with rows
    data = item.inputs["data"]
    assert isinstance(data, list)
    return data


def _score_together(
    model: LoadedModel, columns: list[str], items: list[LoggedInput], monotonic: Monotonic
) -> list[ReplayedRow]:
    counts = [len(_data(item)) for item in items]
    rows = list(chain.from_iterable(_data(item) for item in items))
    document = {"dataframe_split": {"columns": columns, "data": rows}}
    parsed = parse_document(document, model.input_spec, max_rows=len(rows))
    predict: Callable[[Any], Any] = model.model.predict
    if parsed.schema is not None and model.predict_unchecked is not None:
        predict = model.predict_unchecked  # enforced just now, as the service does
    started = monotonic()
    try:
        raw = predict(parsed.data)
    except Exception as error:
        raise _PredictFailed(f"{type(error).__name__}: {error}") from error
    elapsed_ms = (monotonic() - started) * 1000.0
    outputs = rows_of(raw)
    if isinstance(outputs, np.ndarray):
        outputs = outputs.tolist()
    if not isinstance(outputs, list) or len(outputs) != len(rows):
        raise _PredictFailed(f"the prediction has not one entry per input row ({len(rows)})")
    results = []
    start = 0
    for item, count in zip(items, counts, strict=True):
        results.append(
            ReplayedRow(
                item.request_id,
                outputs[start : start + count],
                elapsed_ms * count / len(rows),
                None,
            )
        )
        start += count
    return results


def _failed(item: LoggedInput, why: str) -> ReplayedRow:
    return ReplayedRow(item.request_id, None, None, why)
