"""A model's input signature, prepared once when the model loads.

Parsing a request is on every request's path; what can be worked out from the signature
alone (is every input a plain number column? the column index to build frames with) is
worked out here, once, instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True, slots=True, eq=False)
class InputSpec:
    schema: Any = None
    """The MLflow `Schema` of the model's inputs, or None for a model without signature."""
    numeric_names: tuple[str, ...] | None = None
    """Set when every input is a required `double` column: the cheap parsing path."""
    numeric_columns: pd.Index | None = None
    """The same names as one shared, object-dtype Index: frames reuse it instead of
    building (Arrow-backed, in pandas 3) column labels for every request."""

    @classmethod
    def of(cls, schema: Any) -> InputSpec:
        if not _all_double(schema):
            return cls(schema)
        names = tuple(str(name) for name in schema.input_names())
        return cls(schema, names, pd.Index(names, dtype=object))


def _all_double(schema: Any) -> bool:
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return False
    return all(
        getattr(getattr(spec, "type", None), "name", None) == "double"
        and getattr(spec, "required", False)
        for spec in schema.inputs
    )
