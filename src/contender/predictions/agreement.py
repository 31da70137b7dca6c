"""Do two models' predictions for one request agree, row by row? (the dashboard's rule)

A row agrees when both models give it the same class (the argmax, when a row is a list
of class scores; for two classes, the report's 0.5 threshold), numbers within 1 % of
each other (integers: equal), or else equal values. A one-column row is its value.

Small answers (most requests are one row) are compared in plain Python, a microsecond
or two; from `_NUMPY_ROWS` rows on, with numpy, whose fixed cost is several times that.
Both paths give the same answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

AGREEMENT_REL_TOL = 0.01
"""Numbers within this share of the larger one agree."""
_ABS_TOL = 1e-12
_NUMPY_ROWS = 32


def agreeing_rows(a: Any, b: Any) -> tuple[int, int]:
    """(rows compared, rows that agree) between two arms' predictions for one request."""
    if _row_count(a) >= _NUMPY_ROWS:
        return _numpy_rows(a, b)
    xs = a.tolist() if isinstance(a, np.ndarray) else a
    ys = b.tolist() if isinstance(b, np.ndarray) else b
    if not isinstance(xs, list) or not isinstance(ys, list):
        both_values = not isinstance(xs, list) and not isinstance(ys, list)
        return 1, int(both_values and _same_value(xs, ys))
    if len(xs) != len(ys):
        return len(xs), 0
    return len(xs), sum(_row_agrees(x, y) for x, y in zip(xs, ys, strict=True))


def _row_count(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.shape[0] if value.ndim else 0
    return len(value) if isinstance(value, list) else 0


def _row_agrees(x: Any, y: Any) -> bool:
    if isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            return False
        if len(x) == 1:
            return _row_agrees(x[0], y[0])
        if _numbers(x) and _numbers(y):
            return x.index(max(x)) == y.index(max(y))
        return bool(x == y)
    if isinstance(x, list) or isinstance(y, list):
        return False
    return _same_value(x, y)


def _numbers(row: list[Any]) -> bool:
    return all(isinstance(value, int | float) for value in row)


def _same_value(x: Any, y: Any) -> bool:
    if isinstance(x, int | float) and isinstance(y, int | float) and float in (type(x), type(y)):
        return abs(x - y) <= max(AGREEMENT_REL_TOL * max(abs(x), abs(y)), _ABS_TOL)
    try:
        return bool(x == y)
    except Exception:  # values whose == is not a yes or no (arrays of objects, say)
        return False


def _numpy_rows(a: Any, b: Any) -> tuple[int, int]:
    try:
        x, y = np.asarray(a), np.asarray(b)
    except ValueError:  # ragged nested lists
        return len(a), int(_same_value(a, b)) * len(a)
    rows = x.shape[0]
    if x.shape != y.shape:
        return rows, 0
    if x.ndim == 2 and x.shape[1] == 1:
        x, y = x[:, 0], y[:, 0]
    if x.ndim == 1:
        same = _same(x, y)
    elif x.ndim == 2 and _numeric(x) and _numeric(y):
        same = np.argmax(x, axis=1) == np.argmax(y, axis=1)
    else:
        same = np.all((x == y).reshape(rows, -1), axis=1)
    return rows, int(np.count_nonzero(same))


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "biuf"


def _same(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per element, as `_same_value`."""
    if _numeric(x) and _numeric(y) and "f" in (x.dtype.kind, y.dtype.kind):
        larger = np.maximum(np.abs(x), np.abs(y))
        return np.asarray(np.abs(x - y) <= np.maximum(AGREEMENT_REL_TOL * larger, _ABS_TOL))
    return np.asarray(x == y, dtype=bool)
