"""The MLflow scoring protocol: request bodies in, predictions out.

Parsing goes through MLflow's own scoring-server helpers, so every format that
`mlflow models serve` accepts (`dataframe_split`, `dataframe_records`, `instances`,
`inputs`, `text/csv`, parquet, optional `params`) parses to the very same model input.
The input is checked against the champion's signature once, here, so a missing or
mistyped column is the client's 400, never a model failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO, StringIO
from typing import Any

import numpy as np
import orjson
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models.utils import _enforce_schema
from mlflow.pyfunc import scoring_server
from mlflow.utils.proto_json_utils import _get_jsonable_obj

from contender.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from contender.jsonio import dumps
from contender.predictions.record import JsonValue
from contender.signature import InputSpec

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
PARQUET_TYPE = "application/vnd.apache.parquet"


@dataclass(frozen=True, slots=True)
class ParsedInput:
    data: Any
    params: dict[str, Any] | None
    n_rows: int
    schema: Any
    """The signature `data` was checked and converted against (None: not checked)."""


def parse(body: bytes, content_type: str | None, spec: InputSpec, max_rows: int) -> ParsedInput:
    """Parse and check a request body; raises a `BadRequest` that names the problem."""
    schema = spec.schema
    mime_type, charset = _media_type(content_type)
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"only UTF-8 is supported, got charset={charset}")
    if mime_type == JSON_TYPE:
        document = _load_json(body)
        fast = _numeric_frame(document, spec)
        if fast is not None:
            return _checked(fast, None, schema, max_rows, enforced=True)
        data, params = _decode_json(document, schema)
    else:
        data, params = _decode(body, mime_type, schema)
    return _checked(data, params, schema, max_rows, enforced=False)


def _checked(
    data: Any, params: dict[str, Any] | None, schema: Any, max_rows: int, *, enforced: bool
) -> ParsedInput:
    n_rows = _count_rows(data)
    if n_rows > max_rows:
        raise PayloadTooLarge(f"{n_rows} rows is more than the limit of {max_rows} (--max-rows)")
    if schema is not None and not enforced:
        try:
            data = _enforce_schema(data, schema)
        except MlflowException as error:
            message = f"input does not match the model signature: {error.message}"
            raise BadRequest(message) from error
    return ParsedInput(data, params, n_rows, schema)


def _numeric_frame(document: Any, spec: InputSpec) -> pd.DataFrame | None:
    """The cheap way for the common case: `dataframe_split` or `dataframe_records` of
    numbers against an all-`double` signature becomes one float64 block, exactly what
    MLflow's parse-then-enforce produces. Anything else returns None: the general path
    handles it, and names the problem when there is one."""
    names = spec.numeric_names
    if names is None or not isinstance(document, dict) or len(document) != 1:
        return None
    try:
        if "dataframe_split" in document:
            split = document["dataframe_split"]
            if tuple(split["columns"]) != names:
                return None
            cells = split["data"]
        elif "dataframe_records" in document:
            records = document["dataframe_records"]
            if any(len(record) != len(names) for record in records):
                return None
            cells = [[record[name] for name in names] for record in records]
        else:
            return None
        rows = np.asarray(cells)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    # Only plain numbers: strings, booleans and nulls take the general, checking path.
    if rows.ndim != 2 or rows.shape[1] != len(names) or rows.dtype.kind not in "iuf":
        return None
    # Column-major, as MLflow's enforcement leaves it: BLAS then sums in the same order and
    # the predictions match `mlflow models serve` to the last bit.
    block = np.asfortranarray(rows, dtype=np.float64)
    return pd.DataFrame(block, columns=spec.numeric_columns, copy=False)


def _media_type(content_type: str | None) -> tuple[str, str]:
    if not content_type:
        raise UnsupportedMediaType(
            f"missing Content-Type: use {JSON_TYPE}, {CSV_TYPE} or {PARQUET_TYPE}"
        )
    mime_type, *parameters = (part.strip() for part in content_type.split(";"))
    charset = "utf-8"
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset":
            raise UnsupportedMediaType(f"unrecognised Content-Type parameter {key.strip()!r}")
        charset = value.strip().strip('"').lower()
    return mime_type.lower(), charset


def _decode(body: bytes, mime_type: str, schema: Any) -> tuple[Any, dict[str, Any] | None]:
    if mime_type == CSV_TYPE:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRequest("the CSV body is not valid UTF-8") from error
        return _read_table(lambda: scoring_server.parse_csv_input(StringIO(text), schema)), None
    if mime_type == PARQUET_TYPE:
        return _read_table(lambda: scoring_server.parse_parquet_input(BytesIO(body))), None
    raise UnsupportedMediaType(
        f"unsupported Content-Type {mime_type!r}: use {JSON_TYPE}, {CSV_TYPE} or {PARQUET_TYPE}"
    )


def _read_table(read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = read()
    except MlflowException as error:
        raise BadRequest(_first_line(error.message)) from error
    return frame


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error


def _decode_json(document: Any, schema: Any) -> tuple[Any, dict[str, Any] | None]:
    if not isinstance(document, dict):
        raise BadRequest(
            "the body must be a JSON object with one of the keys dataframe_split, "
            "dataframe_records, instances or inputs"
        )
    data, params = scoring_server._split_data_and_params(document)
    if params is not None and not isinstance(params, dict):
        raise BadRequest("`params` must be a JSON object")
    try:
        return scoring_server.infer_and_parse_data(data, schema), params
    except MlflowException as error:
        raise BadRequest(_first_line(error.message)) from error
    except (ValueError, TypeError, KeyError) as error:
        raise BadRequest(f"the input could not be read: {error}") from error


def _count_rows(data: Any) -> int:
    if isinstance(data, dict):
        lengths = [len(value) for value in data.values() if hasattr(value, "__len__")]
        return max(lengths, default=1)
    if hasattr(data, "shape") and len(data.shape) > 0:
        return int(data.shape[0])
    return len(data) if isinstance(data, Sequence) else 1


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "invalid input"


def rows_of(raw: Any) -> JsonValue:
    """A model output as JSON-able values, row-aligned for arrays and frames (as MLflow).

    An array of a dtype orjson writes exactly as MLflow's `tolist()` would stays an
    array: one object where 100 rows as lists are 101, each of which the garbage
    collector scans for as long as the record waits for the other model. With shadow
    work queued for a second, those lists made full collections of 20 to 56 ms."""
    if isinstance(raw, np.ndarray) and raw.ndim >= 1 and raw.dtype in _ARRAY_JSON_DTYPES:
        return np.ascontiguousarray(raw)
    return _get_jsonable_obj(raw, pandas_orient="records")


# Not float32: orjson writes its shortest float32 form, tolist() the float64 one.
_ARRAY_JSON_DTYPES = frozenset(np.dtype(t) for t in (np.float64, np.int64, np.int32, np.bool_))
_ARRAY_LOGGED_DTYPES = frozenset({np.dtype(np.float64), np.dtype(np.int64)})


def log_inputs(data: Any, redact: frozenset[str]) -> dict[str, JsonValue]:
    """The request rows as `{"columns": [...], "data": [[...]]}`, redacted columns hashed."""
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, np.ndarray) and data.ndim <= 2:
        frame = pd.DataFrame(data)
    elif isinstance(data, dict):
        frame = pd.DataFrame({key: list(np.asarray(value).tolist()) for key, value in data.items()})
    else:
        return {"columns": [], "data": [orjson.loads(dumps(data))]}
    columns = [str(column) for column in frame.columns.tolist()]
    hashed = [index for index, column in enumerate(columns) if column in redact]
    values = frame.to_numpy()
    if not hashed and values.dtype in _ARRAY_LOGGED_DTYPES:
        # The store's encoder (orjson) writes a C-ordered float64/int64 array exactly as
        # it writes the same numbers as Python objects, several times faster, and this
        # runs in the log writer's thread while holding the GIL.
        return {"columns": columns, "data": np.ascontiguousarray(values)}
    # tolist() keeps every float exact; the store's JSON encoder takes care of numpy scalars.
    rows: list[list[JsonValue]] = values.tolist()
    for row in rows:
        for index in hashed:
            row[index] = _hash(row[index])
    return {"columns": columns, "data": rows}


def _hash(value: JsonValue) -> str:
    return "sha256:" + hashlib.sha256(dumps(value)).hexdigest()
