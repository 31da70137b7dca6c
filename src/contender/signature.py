"""A model's input signature, prepared once when the model loads.

Parsing a request is on every request's path; what can be worked out from the signature
alone (is every input a plain number column? which columns must hold a value in every
row? the column index to build frames with) is worked out here, once, instead.

The rule for missing values: a column the signature marks `required` must have a value
in every row. In a `double` or `float` column that is a finite number (null, NaN and
±Infinity are refused: the model would fail on them, or answer nonsense); in a `string`,
`binary` or `datetime` column anything but null. `long` and `integer` columns cannot hold
a missing value at all (MLflow's reader refuses it; the message then names the column).
`boolean` columns are read as MLflow reads them. A model that takes missing values has
them in its training data, and `infer_signature` then marks those columns optional,
which this rule leaves alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contender.errors import BadRequest

_FLOATS = frozenset({"double", "float"})
_INTEGERS = frozenset({"long", "integer"})
_PRESENT = frozenset({"string", "binary", "datetime"})


@dataclass(frozen=True, slots=True, eq=False)
class InputSpec:
    schema: Any = None
    """The MLflow `Schema` of the model's inputs, or None for a model without signature."""
    numeric_names: tuple[str, ...] | None = None
    """Set when every input is a required `double` column: the cheap parsing path."""
    numeric_columns: pd.Index | None = None
    """The same names as one shared, object-dtype Index: frames reuse it instead of
    building (Arrow-backed, in pandas 3) column labels for every request."""
    finite_names: tuple[str, ...] = ()
    """Required `double` and `float` columns: a finite number in every row."""
    integer_names: tuple[str, ...] = ()
    """Required `long` and `integer` columns: named when MLflow's reader refuses a null."""
    present_names: tuple[str, ...] = ()
    """Required `string`, `binary` and `datetime` columns: no null in any row."""
    only_floats: bool = False
    """Every input is a required `double` or `float`: one array holds the whole frame."""

    @classmethod
    def of(cls, schema: Any) -> InputSpec:
        kinds = _required_kinds(schema)
        finite, integer, present = (
            tuple(name for name, kind in kinds.items() if kind in group)
            for group in (_FLOATS, _INTEGERS, _PRESENT)
        )
        only_floats = bool(finite) and len(finite) == len(schema.inputs)
        names = tuple(str(name) for name in schema.input_names()) if _all_double(schema) else None
        columns = None if names is None else pd.Index(names, dtype=object)
        return cls(schema, names, columns, finite, integer, present, only_floats)

    def refuse_missing(self, frame: pd.DataFrame) -> None:
        """Raise `BadRequest` naming the first required column with a missing value.

        `frame` is the input after MLflow's enforcement (each column of its signature
        type). A check per column, not per cell: for an all-float signature one
        `isfinite` over one array, a few microseconds."""
        if self.only_floats and frame.shape[1] == len(self.finite_names):
            block = frame.to_numpy()
            if block.dtype.kind == "f" and np.isfinite(block).all():
                return
        for name in self.finite_names:
            values = frame[name].to_numpy()
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                row = int(np.flatnonzero(~np.isfinite(values))[0])
                raise _missing(name, row, _float_text(values[row]))
        for name in self.present_names:
            absent = pd.isna(frame[name].to_numpy())
            if absent.any():
                raise _missing(name, int(np.flatnonzero(absent)[0]), "null", "a value")

    def missing_in_document(self, document: dict[str, Any]) -> BadRequest | None:
        """For a JSON body MLflow's reader refused: the first required number column with
        a null, NaN or infinity in it, or None (MLflow's own message is then the answer).
        MLflow refuses a null in a `long` column without naming it; this names it. Only
        on that error path, so cell by cell."""
        for name in (*self.integer_names, *self.finite_names):
            for row, cell in enumerate(_document_cells(document, name)):
                found = _not_a_number(cell)
                if found is not None:
                    wanted = "an integer" if name in self.integer_names else "a finite number"
                    return _missing(name, row, found, wanted)
        return None


def _missing(name: str, row: int, found: str, wanted: str = "a finite number") -> BadRequest:
    return BadRequest(
        f"column {name!r} is required by the model signature, but row {row} has {found}: "
        f"send {wanted} in every row"
    )


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "no value (null or NaN)"
    return "Infinity" if value > 0 else "-Infinity"


def _not_a_number(cell: Any) -> str | None:
    """What a JSON cell holds instead of a number (null, NaN, Infinity), or None."""
    if cell is None:
        return "null"
    if not isinstance(cell, str | float):
        return None
    try:
        number = float(cell)
    except ValueError:
        return None
    return None if math.isfinite(number) else _float_text(number)


def _document_cells(document: dict[str, Any], name: str) -> list[Any]:
    """Column `name`'s cells in a JSON body of any of the scoring protocol's shapes."""
    if len(document) != 1:
        return []
    ((key, value),) = document.items()
    if key == "dataframe_split" and isinstance(value, dict):
        columns, rows = value.get("columns"), value.get("data")
        if isinstance(columns, list) and name in columns and isinstance(rows, list):
            index = columns.index(name)
            return [row[index] for row in rows if isinstance(row, list) and len(row) > index]
        return []
    if isinstance(value, list):  # records, for dataframe_records, instances or inputs
        return [row.get(name) for row in value if isinstance(row, dict)]
    if isinstance(value, dict) and name in value:  # columns, for instances or inputs
        cells = value[name]
        return cells if isinstance(cells, list) else [cells]
    return []


def _required_kinds(schema: Any) -> dict[str, str]:
    """Column name -> its type's name (`double`, `string`, ...), required columns only."""
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return {}
    return {
        str(spec.name): str(getattr(getattr(spec, "type", None), "name", ""))
        for spec in schema.inputs
        if getattr(spec, "required", False)
    }


def _all_double(schema: Any) -> bool:
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return False
    return all(
        getattr(getattr(spec, "type", None), "name", None) == "double"
        and getattr(spec, "required", False)
        for spec in schema.inputs
    )
