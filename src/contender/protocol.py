"""The MLflow scoring protocol: request bodies in, predictions out.

Parsing goes through MLflow's own scoring-server helpers, so every format that
`mlflow models serve` accepts (`dataframe_split`, `dataframe_records`, `instances`,
`inputs`, `text/csv`, parquet, optional `params`) parses to the very same model input.
The input is checked against the champion's signature once, here, so a missing or
mistyped column, a missing value in a required column (`InputSpec.refuse_missing`),
duplicate column names or an empty request are the client's 400, never a model failure.
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from io import BytesIO, StringIO
from typing import Any

import numpy as np
import orjson
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models.utils import _enforce_schema
from mlflow.pyfunc import scoring_server
from mlflow.utils.proto_json_utils import _get_jsonable_obj

from contender.errors import BadRequest, ConfigError, PayloadTooLarge, UnsupportedMediaType
from contender.predictions.record import JsonValue
from contender.signature import InputSpec

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
PARQUET_TYPE = "application/vnd.apache.parquet"
REDACTED_PREFIX = "hmac-sha256:"

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParsedInput:
    data: Any
    params: dict[str, Any] | None
    n_rows: int
    schema: Any
    """The signature `data` was checked and converted against (None: not checked)."""


def parse(body: bytes, content_type: str | None, spec: InputSpec, max_rows: int) -> ParsedInput:
    """Parse and check a request body; raises a `BadRequest` that names the problem."""
    mime_type, charset = _media_type(content_type)
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"only UTF-8 is supported, got charset={charset}")
    if mime_type == JSON_TYPE:
        return parse_document(_load_json(body), spec, max_rows)
    data, params = _decode(body, mime_type, spec.schema)
    return _checked(data, params, spec, max_rows)


def parse_document(document: Any, spec: InputSpec, max_rows: int) -> ParsedInput:
    """`parse` for a JSON body already loaded, or built by another protocol (V2 tensors):
    the same model input, the same checks, the same 400s."""
    fast = _numeric_frame(document, spec)
    if fast is not None:
        # Plain JSON numbers in a float64 block: finite (JSON has no NaN or Infinity,
        # and orjson refuses 1e999), the signature's columns exactly, in order.
        _check_rows(len(fast), max_rows)
        return ParsedInput(fast, None, len(fast), spec.schema)
    data, params = _decode_json(document, spec)
    return _checked(data, params, spec, max_rows)


def _checked(
    data: Any, params: dict[str, Any] | None, spec: InputSpec, max_rows: int
) -> ParsedInput:
    _check_rows(_count_rows(data), max_rows)
    if isinstance(data, pd.DataFrame) and not data.columns.is_unique:
        duplicated = sorted({str(name) for name in data.columns[data.columns.duplicated()]})
        raise BadRequest(f"duplicate column names: {', '.join(duplicated)}")
    if spec.schema is not None:
        data = _enforced(data, spec)
        if isinstance(data, pd.DataFrame):
            spec.refuse_missing(data)
    n_rows = _count_rows(data)
    # Enforcement can broadcast (a dict of scalars is one row): count again, from what
    # the models get.
    _check_rows(n_rows, max_rows)
    return ParsedInput(data, params, n_rows, spec.schema)


def _check_rows(n_rows: int, max_rows: int) -> None:
    if n_rows == 0:
        raise BadRequest("the request has no rows: send at least one")
    if n_rows > max_rows:
        raise PayloadTooLarge(f"{n_rows} rows is more than the limit of {max_rows} (--max-rows)")


def _enforced(data: Any, spec: InputSpec) -> Any:
    """The input converted to the signature's types, by MLflow's own enforcement."""
    try:
        return _enforce_schema(data, spec.schema)
    except MlflowException as error:
        message = f"input does not match the model signature: {_first_line(error.message)}"
        raise BadRequest(message) from error
    except Exception as error:
        # MLflow's enforcement crashes on some shapes it does not expect (a nested list in
        # a number column, ...): still the input's problem, and the column can be named.
        _log.debug("enforcement failed", exc_info=error)
        raise BadRequest(_enforcement_crash(data, spec.schema, error)) from error


def _enforcement_crash(data: Any, schema: Any, error: Exception) -> str:
    for column in _column_specs(schema):
        name = column.name
        try:
            if isinstance(data, pd.DataFrame) and name in data.columns:
                _enforce_schema(data[[name]], type(schema)([column]))
            elif isinstance(data, dict) and name in data:
                _enforce_schema({name: data[name]}, type(schema)([column]))
        except Exception:
            kind = getattr(column.type, "name", column.type)
            return f"column {name!r} does not hold values of its signature type, {kind}"
    return f"input does not match the model signature ({type(error).__name__})"


def _column_specs(schema: Any) -> list[Any]:
    if schema.is_tensor_spec() or not schema.has_input_names():
        return []
    return list(schema.inputs)


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
            # An `index` (or a key MLflow refuses) is for MLflow's own reader to judge.
            if len(split) != 2 or tuple(split["columns"]) != names:
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


def _decode_json(document: Any, spec: InputSpec) -> tuple[Any, dict[str, Any] | None]:
    if not isinstance(document, dict):
        raise BadRequest(
            "the body must be a JSON object with one of the keys dataframe_split, "
            "dataframe_records, instances or inputs"
        )
    data, params = scoring_server._split_data_and_params(document)
    if params is not None and not isinstance(params, dict):
        raise BadRequest("`params` must be a JSON object")
    try:
        return scoring_server.infer_and_parse_data(data, spec.schema), params
    except MlflowException as error:
        raise spec.missing_in_document(data) or BadRequest(_first_line(error.message)) from error
    except Exception as error:
        # MLflow's readers fail in many ways on shapes they do not expect; every one of
        # them is about the body.
        _log.debug("parsing failed", exc_info=error)
        raise BadRequest(f"the input could not be read: {_first_line(str(error))}") from error


def _count_rows(data: Any) -> int:
    if isinstance(data, dict):
        return max((_length(value) for value in data.values()), default=1)
    return _length(data)


def _length(value: Any) -> int:
    if isinstance(value, pd.DataFrame | pd.Series | np.ndarray):
        return int(value.shape[0]) if value.ndim > 0 else 1
    return len(value) if isinstance(value, list | tuple) else 1


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


@dataclass(frozen=True, slots=True)
class Redaction:
    """The input columns the log keeps only as keyed hashes (`--redact`), and the key.

    A cell becomes `"hmac-sha256:<hex>"`, the HMAC-SHA256 of its JSON text keyed by
    `CONTENDER_REDACT_KEY`: the same value and key give the same token, so joins on
    a redacted column still work, but without the key nobody can test guesses (a plain
    hash of a birth date or a postcode is reversed by hashing every candidate)."""

    columns: frozenset[str] = frozenset()
    key: bytes = field(default=b"", repr=False)

    @classmethod
    def of(cls, columns: Iterable[str], key: str | None) -> Redaction:
        columns = frozenset(columns)
        if columns and not key:
            raise ConfigError("--redact needs CONTENDER_REDACT_KEY, the key of its hashes")
        return cls(columns, (key or "").encode())

    def token(self, value: Any) -> str:
        return REDACTED_PREFIX + hmac.digest(self.key, _json_bytes(value), "sha256").hex()

    def scrub(self, value: Any) -> Any:
        """A JSON value with every object entry named like a redacted column tokenised:
        for inputs that are not a table (a model without signature takes them as sent)."""
        if isinstance(value, dict):
            return {
                key: self.token(item) if key in self.columns else self.scrub(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        return value


def log_inputs(data: Any, redaction: Redaction) -> dict[str, JsonValue]:
    """The request rows as `{"columns": [...], "data": [[...]]}`, redacted columns hashed.

    Runs in the log writer's thread, so it never raises on an odd input: a value that
    is not a table is logged as it came (with redacted entries tokenised)."""
    frame = _as_frame(data)
    if frame is None:
        plain = orjson.loads(_json_bytes(data))
        return {"columns": [], "data": [redaction.scrub(plain) if redaction.columns else plain]}
    columns = [str(column) for column in frame.columns.tolist()]
    hashed = [index for index, column in enumerate(columns) if column in redaction.columns]
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
            row[index] = redaction.token(row[index])
    if values.dtype == object:
        # Cells the store's encoder cannot write (bytes, pandas' NA) become JSON here, and
        # objects in cells lose their entries named like redacted columns, as elsewhere.
        rows = orjson.loads(_json_bytes(rows))
        if redaction.columns:
            rows = redaction.scrub(rows)
    return {"columns": columns, "data": rows}


def _as_frame(data: Any) -> pd.DataFrame | None:
    if isinstance(data, pd.DataFrame):
        return data
    try:
        if isinstance(data, np.ndarray) and data.ndim in (1, 2):
            return pd.DataFrame(data)
        if isinstance(data, dict):
            return pd.DataFrame(
                {key: np.atleast_1d(np.asarray(value)).tolist() for key, value in data.items()}
            )
    except (ValueError, TypeError):
        return None  # ragged columns, or cells numpy cannot stack: logged as sent
    return None


def _json_bytes(value: Any) -> bytes:
    """The very bytes of `jsonio.dumps` for every JSON value, numpy scalar and timestamp,
    and JSON for anything else a parsed input can hold (arrays, bytes, pandas' NA)."""
    return orjson.dumps(value, default=_lenient, option=orjson.OPT_SERIALIZE_NUMPY)


def _lenient(value: Any) -> Any:
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | date):  # pandas Timestamps included
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return str(value)
