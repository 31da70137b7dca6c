"""Model outputs and logged inputs kept as arrays write exactly the JSON of their lists."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.utils.proto_json_utils import _get_jsonable_obj

from contender import protocol
from contender.jsonio import dumps


@pytest.mark.parametrize(
    "output",
    [
        np.array([[0.25, 0.75], [np.nan, 1e300], [-0.0, 5e-324]]),
        np.array([1, -2, 2**62], dtype=np.int64),
        np.array([1, 2], dtype=np.int32),
        np.array([True, False]),
        np.asfortranarray(np.arange(6.0).reshape(3, 2)),
        np.array([[0.1, 0.2]], dtype=np.float32),
        np.array(["a", "b"]),
    ],
    ids=["float64", "int64", "int32", "bool", "fortran-order", "float32", "strings"],
)
def test_predictions_write_the_json_mlflow_writes(output: Any) -> None:
    expected = dumps(_get_jsonable_obj(output, pandas_orient="records"))  # type: ignore[no-untyped-call]
    assert dumps(protocol.rows_of(output)) == expected


def test_float32_predictions_become_lists_as_in_mlflow() -> None:
    # orjson would write float32 in its own shortest form, not MLflow's float64 digits.
    assert isinstance(protocol.rows_of(np.array([0.1], dtype=np.float32)), list)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": [0.1, np.nan], "b": [1e-7, 3.0]}),
        pd.DataFrame({"a": [1, 2], "b": [3, 2**60]}),
        pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}),
        pd.DataFrame({"a": ["x", "y"], "b": [0.5, 1.5]}),
    ],
    ids=["floats", "ints", "ints-and-floats", "with-strings"],
)
def test_logged_inputs_write_the_json_of_their_rows(frame: pd.DataFrame) -> None:
    expected = {"columns": ["a", "b"], "data": frame.to_numpy().tolist()}
    assert dumps(protocol.log_inputs(frame, protocol.Redaction())) == dumps(expected)


def test_redacted_inputs_are_still_hashed() -> None:
    frame = pd.DataFrame({"a": [0.5], "b": [1.5]})
    logged = protocol.log_inputs(frame, protocol.Redaction(frozenset({"a"}), b"key"))
    assert isinstance(logged["data"], list)
    assert logged["data"][0][0] != 0.5
    assert logged["data"][0][1] == 1.5
