"""Open Inference Protocol (V2) tensors: an infer request to the scoring protocol's input,
a model's predictions back to output tensors, a signature to tensor metadata.

A request's tensors become the very JSON document `/invocations` reads (`dataframe_split`
for a signature of columns, `inputs` for a tensor signature), which
`protocol.parse_document` parses and checks: V2 gets the same model input, the same
signature checks and the same 400s. For columns, either one tensor per column (named after
the signature's columns, each of shape [n] or [n, 1]) or one 2-D tensor [n, k] whose
columns are the signature's, in order.

A tensor's datatype is checked against its data (FP* holds numbers, INT* integers in
range, BOOL booleans, BYTES strings) but does not cast JSON data: the signature's types
decide, as for `/invocations`, so the same numbers are the same input. Binary data (the
`binary_tensor_data` extension, tritonclient's default) is read as little-endian values
of the datatype; a NaN or an infinity in it goes into the document as JSON would carry
it (`null`, `"Infinity"`), so the signature's missing-value rule refuses it by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from contender.errors import BadRequest
from contender.signature import InputSpec

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}
# The numpy kinds JSON data of each datatype may parse to, and what to call them.
_KINDS = {"BOOL": ("b", "booleans"), "FP": ("iuf", "numbers"), "INT": ("iu", "integers")}
# MLflow column types (`DataType.name`) as V2 datatypes; other types (arrays, objects) are
# sent as BYTES.
_COLUMN_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
DEFAULT_OUTPUT = "predictions"
# Numpy arrays orjson writes exactly as `tolist()` would (not float32: its shortest form).
_ARRAY_JSON_DTYPES = frozenset(np.dtype(t) for t in (np.float64, np.int64, np.int32, np.bool_))


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray[Any, Any]
    """Flat, row-major: `math.prod(shape)` values."""


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool | None
    """Its `parameters.binary_data`; None: the request's `binary_data_output` decides."""


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[RequestedOutput, ...]
    """Empty: every output."""
    binary_output: bool


def read_request(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request body (JSON, or a JSON header of `header_length` bytes followed by
    binary tensor data); raises a `BadRequest` that names the problem."""
    header, binary = _split_body(body, header_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object with `inputs`, a list of tensors")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("`inputs` must be a non-empty list of tensors")
    chunks = _Chunks(binary)
    tensors = tuple(_tensor(item, position, chunks) for position, item in enumerate(inputs))
    chunks.finish()
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("`id` must be a string")
    parameters = _parameters(document.get("parameters"), "the request")
    binary_output = _flag(parameters, "binary_data_output", "the request")
    return InferRequest(request_id, tensors, _outputs(document.get("outputs")), bool(binary_output))


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadRequest(
            "Inference-Header-Content-Length is not the length of a JSON header in the body"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"`parameters` of {where} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"parameter {key!r} of {where} must be true or false")
    return value


def _outputs(value: Any) -> tuple[RequestedOutput, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequest('`outputs` must be a list of {"name": ...} objects')
    outputs = []
    for position, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"output {position} needs a string `name`")
        where = f"output {item['name']!r}"
        binary = _flag(_parameters(item.get("parameters"), where), "binary_data", where)
        outputs.append(RequestedOutput(item["name"], binary))
    return tuple(outputs)


def _tensor(item: Any, position: int, chunks: _Chunks) -> Tensor:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise BadRequest(f"input {position} needs a string `name`")
    name: str = item["name"]
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise BadRequest(
            f"tensor {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}"
        )
    shape = _shape(item.get("shape"), name)
    values = _values(item, name, datatype, chunks)
    size = math.prod(shape)
    if values.size != size:
        raise BadRequest(
            f"tensor {name!r} has shape {list(shape)} ({size} values), "
            f"but its data holds {values.size}"
        )
    return Tensor(name, datatype, shape, values)


def _values(
    item: dict[str, Any], name: str, datatype: str, chunks: _Chunks
) -> np.ndarray[Any, Any]:
    parameters = _parameters(item.get("parameters"), f"tensor {name!r}")
    if "shared_memory_region" in parameters:
        raise BadRequest(f"tensor {name!r}: shared memory is not supported; send its data")
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        if "data" in item:
            raise BadRequest(f"tensor {name!r} has both `data` and binary data")
        return _from_binary(name, datatype, chunks.take(name, binary_size))
    if "data" not in item:
        raise BadRequest(f"tensor {name!r} has no `data`")
    return _from_json(name, datatype, item["data"])


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    ):
        raise BadRequest(f"tensor {name!r} needs a `shape`: a list of sizes (integers >= 0)")
    return tuple(value)


def _from_json(name: str, datatype: str, data: Any) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        raise BadRequest(f"tensor {name!r}: `data` must be a JSON array")
    if datatype == "BYTES":
        cells = _flatten(data)
        if not all(isinstance(cell, str) for cell in cells):
            raise BadRequest(f"tensor {name!r} of datatype BYTES holds values that are not strings")
        strings = np.empty(len(cells), dtype=object)
        strings[:] = cells
        return strings
    try:
        array = np.asarray(data)
    except ValueError as error:
        raise BadRequest(f"tensor {name!r}: `data` is not a regular (row-major) array") from error
    if array.size == 0:
        return np.empty(0, DATATYPES[datatype])
    kinds, what = _KINDS[_family(datatype)]
    if array.dtype.kind not in kinds:
        raise BadRequest(f"tensor {name!r} of datatype {datatype} holds values that are not {what}")
    flat = array.reshape(-1)
    if flat.dtype.kind in "iu" and _family(datatype) == "INT":
        limits = np.iinfo(DATATYPES[datatype])
        if flat.min() < limits.min or flat.max() > limits.max:
            raise BadRequest(f"tensor {name!r} holds values out of the range of {datatype}")
    return flat


def _family(datatype: str) -> str:
    """BOOL, FP (FP16 to FP64) or INT (INT8 to UINT64)."""
    if datatype.startswith("FP"):
        return "FP"
    return "INT" if "INT" in datatype else datatype


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _from_binary(name: str, datatype: str, chunk: bytes) -> np.ndarray[Any, Any]:
    if datatype == "BYTES":
        return _strings(name, chunk)
    dtype = DATATYPES[datatype]
    if len(chunk) % dtype.itemsize:
        raise BadRequest(f"tensor {name!r}: {len(chunk)} bytes are not whole {datatype} values")
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype)


def _strings(name: str, chunk: bytes) -> np.ndarray[Any, Any]:
    """BYTES in binary: each element a 4-byte little-endian length, then its bytes."""
    cells: list[str] = []
    offset = 0
    while offset < len(chunk):
        length = int.from_bytes(chunk[offset : offset + 4], "little")
        cell = chunk[offset + 4 : offset + 4 + length]
        if offset + 4 > len(chunk) or len(cell) != length:
            raise BadRequest(f"tensor {name!r}: its binary BYTES data is cut short")
        try:
            cells.append(cell.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise BadRequest(f"tensor {name!r}: element {len(cells)} is not UTF-8") from error
        offset += 4 + length
    strings = np.empty(len(cells), dtype=object)
    strings[:] = cells
    return strings


class _Chunks:
    """The binary part of a body, handed to the tensors that declare a `binary_data_size`,
    in order."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, name: str, size: Any) -> bytes:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"tensor {name!r}: `binary_data_size` must be an integer >= 0")
        if self._offset + size > len(self._data):
            raise BadRequest(f"tensor {name!r}: its binary data runs past the end of the body")
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def finish(self) -> None:
        if self._offset != len(self._data):
            raise BadRequest(
                f"the body has {len(self._data) - self._offset} bytes of binary data "
                "that no tensor's `binary_data_size` claims"
            )


def document_of(tensors: tuple[Tensor, ...], spec: InputSpec) -> dict[str, Any]:
    """The scoring protocol's JSON document for these tensors: `/invocations`' input."""
    schema = spec.schema
    if schema is not None and schema.is_tensor_spec():
        if len(tensors) == 1:
            return {"inputs": _nested(tensors[0])}
        return {"inputs": {tensor.name: _nested(tensor) for tensor in tensors}}
    names = _column_names(schema)
    if _is_matrix(tensors, names):
        return _matrix_document(tensors[0], names, spec)
    return _columns_document(tensors, names, spec)


def _nested(tensor: Tensor) -> Any:
    return _cells(tensor.values).reshape(tensor.shape).tolist()


def _column_names(schema: Any) -> tuple[str, ...] | None:
    if schema is None or not schema.has_input_names():
        return None
    return tuple(str(name) for name in schema.input_names())


def _is_matrix(tensors: tuple[Tensor, ...], names: tuple[str, ...] | None) -> bool:
    """One 2-D tensor that is not one of the signature's columns holds them all."""
    if len(tensors) != 1 or len(tensors[0].shape) != 2:
        return False
    if names is None:
        return tensors[0].shape[1] != 1
    return tensors[0].name not in names


def _matrix_document(
    tensor: Tensor, names: tuple[str, ...] | None, spec: InputSpec
) -> dict[str, Any]:
    n_rows, n_columns = tensor.shape
    if names is not None and n_columns != len(names):
        raise BadRequest(
            f"tensor {tensor.name!r} has shape {list(tensor.shape)}: a 2-D input needs one "
            f"column per signature input, {len(names)} ({', '.join(names)}), or send one "
            "tensor per column"
        )
    rows = tensor.values.reshape(n_rows, n_columns)
    return _split_document(None if names is None else list(names), rows, spec)


def _columns_document(
    tensors: tuple[Tensor, ...], names: tuple[str, ...] | None, spec: InputSpec
) -> dict[str, Any]:
    seen: set[str] = set()
    for tensor in tensors:
        if tensor.name in seen:
            raise BadRequest(f"tensor {tensor.name!r} is sent twice")
        seen.add(tensor.name)
        if len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ((), (1,)):
            raise BadRequest(
                f"tensor {tensor.name!r} has shape {list(tensor.shape)}: a column's tensor "
                "has shape [n] or [n, 1] (or send one 2-D tensor [n, k] of every column)"
            )
    counts = {tensor.name: tensor.shape[0] for tensor in tensors}
    if len(set(counts.values())) > 1:
        sizes = ", ".join(f"{name} has {count}" for name, count in counts.items())
        raise BadRequest(f"the tensors have different numbers of rows: {sizes}")
    # The signature's order first: then the cheap all-numbers path applies.
    order = {name: index for index, name in enumerate(names or ())}
    ordered = sorted(tensors, key=lambda tensor: order.get(tensor.name, len(order)))
    columns = [tensor.values for tensor in ordered]
    rows: Any
    if all(_plain_numbers(values) for values in columns):
        rows = np.column_stack(columns)
    else:
        cells = (_cells(values).tolist() for values in columns)
        rows = [list(row) for row in zip(*cells, strict=True)]
    return _split_document([tensor.name for tensor in ordered], rows, spec)


def _split_document(columns: list[str] | None, rows: Any, spec: InputSpec) -> dict[str, Any]:
    # An array goes in as it is only where the all-numbers path takes it whole (the
    # signature's double columns, in order, finite); MLflow's own reader gets lists.
    whole = columns is not None and tuple(columns) == spec.numeric_names
    if isinstance(rows, np.ndarray) and not (whole and _plain_numbers(rows)):
        rows = _cells(rows).tolist()
    if columns is None:
        return {"dataframe_split": {"data": rows}}
    return {"dataframe_split": {"columns": columns, "data": rows}}


def _plain_numbers(values: np.ndarray[Any, Any]) -> bool:
    kind = values.dtype.kind
    return kind in "iu" or (kind == "f" and bool(np.isfinite(values).all()))


def _cells(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """`values` as JSON would carry them: NaN as null, infinities as "Infinity" strings."""
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return values
    cells = values.astype(object)
    cells[np.isnan(values)] = None
    cells[np.isposinf(values)] = "Infinity"
    cells[np.isneginf(values)] = "-Infinity"
    return cells


# Predictions out.


def outputs_of(predictions: Any, single_name: str) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """The answer's output tensors: one per column for a table (records or a dict of
    columns), else one named `single_name`."""
    if isinstance(predictions, dict):
        return [(str(key), _array(value)) for key, value in predictions.items()]
    if (
        isinstance(predictions, list)
        and predictions
        and all(isinstance(row, dict) for row in predictions)
    ):
        keys = list(predictions[0])
        if all(list(row) == keys for row in predictions):
            return [(str(key), _array([row[key] for row in predictions])) for key in keys]
    return [(single_name, _array(predictions))]


def _array(values: Any) -> np.ndarray[Any, Any]:
    if isinstance(values, np.ndarray):
        return values
    try:
        array = np.asarray(values)
    except ValueError:
        array = None
    if array is not None and array.dtype.kind in "biufU":
        return array
    # Ragged rows, nulls, objects: each row as its JSON text, a BYTES tensor.
    rows = values if isinstance(values, list) else [values]
    texts = np.empty(len(rows), dtype=object)
    texts[:] = [
        orjson.dumps(row, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode() for row in rows
    ]
    return texts


def datatype_of(dtype: np.dtype[Any]) -> str:
    if dtype.kind not in "biuf":
        return "BYTES"
    return _BY_DTYPE.get(np.dtype(f"{dtype.kind}{dtype.itemsize}"), "BYTES")


def encode_outputs(
    outputs: list[tuple[str, np.ndarray[Any, Any]]], request: InferRequest
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The response's `outputs`, the requested ones (all when none were), each as JSON
    `data` or, where binary was asked for, as bytes after the JSON header."""
    wanted = {output.name: output for output in request.outputs}
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs:
        if wanted and name not in wanted:
            continue
        asked = wanted[name].binary if name in wanted else None
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array.dtype),
            "shape": list(array.shape),
        }
        if request.binary_output if asked is None else asked:
            chunk = _raw(array)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            tensor["data"] = _json_data(array)
        tensors.append(tensor)
    return tensors, chunks


def _json_data(array: np.ndarray[Any, Any]) -> Any:
    flat = np.ascontiguousarray(array).reshape(-1)
    return flat if flat.dtype in _ARRAY_JSON_DTYPES else flat.tolist()


def _raw(array: np.ndarray[Any, Any]) -> bytes:
    if array.dtype.kind not in "biuf":
        texts = (str(cell).encode() for cell in array.reshape(-1).tolist())
        return b"".join(len(text).to_bytes(4, "little") + text for text in texts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


# Signatures as tensor metadata.


def input_metadata(schema: Any) -> list[dict[str, Any]]:
    return _metadata(schema, lambda index, count: f"input-{index}")


def output_metadata(schema: Any) -> list[dict[str, Any]]:
    return _metadata(schema, _output_name)


def output_names(schema: Any) -> tuple[str, ...]:
    """The outputs a request may ask for: the signature's, or the one default."""
    return tuple(entry["name"] for entry in output_metadata(schema)) or (DEFAULT_OUTPUT,)


def single_output_name(schema: Any) -> str:
    names = output_names(schema)
    return names[0] if len(names) == 1 else DEFAULT_OUTPUT


def _output_name(index: int, count: int) -> str:
    return DEFAULT_OUTPUT if count == 1 else f"output-{index}"


def _metadata(schema: Any, unnamed: Any) -> list[dict[str, Any]]:
    if schema is None:
        return []
    specs = list(schema.inputs)
    entries = []
    for index, spec in enumerate(specs):
        name = str(spec.name) if spec.name is not None else unnamed(index, len(specs))
        if schema.is_tensor_spec():
            datatype, shape = datatype_of(np.dtype(spec.type)), list(spec.shape)
        else:
            datatype = _COLUMN_DATATYPES.get(str(getattr(spec.type, "name", "")), "BYTES")
            shape = [-1]
        entries.append({"name": name, "datatype": datatype, "shape": shape})
    return entries
