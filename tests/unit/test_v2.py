"""The Open Inference Protocol (V2) endpoints in-process: the same input, routing, record
and errors as `/invocations`, over fake models behind real MLflow signatures."""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from mlflow.types import ColSpec, DataType, Schema, TensorSpec
from starlette.testclient import TestClient

from contender.compose import build_services
from contender.http.app import create_app
from contender.jsonio import dumps
from contender.models import LoadedModel, ModelRef
from contender.settings import Settings
from contender.signature import InputSpec
from tests.fakes import FakeClock, FakeModel, FakeRegistryClient, ListStore, model_ref

DOUBLES = Schema([ColSpec(DataType.double, name) for name in ("a", "b")])
PROBABILITIES = Schema([TensorSpec(np.dtype(np.float64), (-1, 2))])
MIXED = Schema(
    [
        ColSpec(DataType.double, "d"),
        ColSpec(DataType.long, "n"),
        ColSpec(DataType.string, "s"),
        ColSpec(DataType.boolean, "flag"),
        ColSpec(DataType.float, "maybe", required=False),
    ]
)
ROWS = [[0.25, 0.5], [0.125, 0.75], [1.0, -2.0]]
INFER = "/v2/models/m/infer"


class Metadata:
    """What the V2 endpoints read of a pyfunc's metadata: its output schema."""

    def __init__(self, outputs: Schema | None) -> None:
        self._outputs = outputs

    def get_output_schema(self) -> Schema | None:
        return self._outputs


class SignedModel(FakeModel):
    """Scores `[1 - first column, first column]` per row, or answers `answer(data)`."""

    def __init__(
        self,
        outputs: Schema | None,
        error: Exception | None = None,
        answer: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(score=lambda row: float(row.iloc[0]), error=error)
        self.metadata = Metadata(outputs)
        self._answer = answer

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        if self._answer is None:
            return super().predict(data, params)
        with self._lock:
            self.calls += 1
        return self._answer(data)


class SignedLoader:
    """Counting models behind `inputs` (their signature) and `outputs`; versions in
    `broken` raise when they predict."""

    def __init__(
        self,
        inputs: Schema | None,
        outputs: Schema | None,
        broken: frozenset[str],
        answer: Callable[[Any], Any] | None,
    ) -> None:
        self.downloads = 0
        self.models: dict[str, SignedModel] = {}
        self._spec = InputSpec.of(inputs) if inputs is not None else InputSpec()
        self._outputs = outputs
        self._broken = broken
        self._answer = answer

    def __call__(self, ref: ModelRef) -> LoadedModel:
        self.downloads += 1
        error = RuntimeError("boom") if ref.version in self._broken else None
        model = self.models[ref.version] = SignedModel(self._outputs, error, self._answer)
        return LoadedModel(ref, model, FakeClock().now(), input_spec=self._spec)


@dataclass
class App:
    client: TestClient
    store: ListStore
    loader: SignedLoader

    def infer(self, body: Any, **headers: str) -> Any:
        return self.client.post(INFER, content=orjson.dumps(body), headers=headers)

    def records(self) -> list[dict[str, Any]]:
        """The store's records as JSON, the way an export shows them."""
        return [orjson.loads(dumps(record.to_row())) for record in self.store.records]


def make_app(
    inputs: Schema | None = DOUBLES,
    outputs: Schema | None = PROBABILITIES,
    *,
    champion: bool = True,
    broken: frozenset[str] = frozenset(),
    answer: Callable[[Any], Any] | None = None,
) -> Iterator[App]:
    ids = itertools.count()
    loader = SignedLoader(inputs, outputs, broken, answer)
    store = ListStore()
    registry = FakeRegistryClient(model_ref("m", "1") if champion else None, model_ref("m", "2"))
    services = build_services(
        Settings(model="m", challenger_weight=0.0), clock=FakeClock(), rng=random.Random(1),
        registry_client=registry, loader=loader, store=store,
        new_request_id=lambda: f"req-{next(ids)}",
    )  # fmt: skip
    with TestClient(create_app(services)) as client:
        yield App(client, store, loader)


@pytest.fixture
def app() -> Iterator[App]:
    yield from make_app()


def column(name: str, values: list[Any], datatype: Any = "FP64", **extra: Any) -> dict[str, Any]:
    return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values, **extra}


def by_column(rows: list[list[float]] = ROWS) -> dict[str, Any]:
    return {"inputs": [column(name, [row[i] for row in rows]) for i, name in enumerate("ab")]}


def expected(rows: list[list[float]] = ROWS) -> list[list[float]]:
    return [[1 - row[0], row[0]] for row in rows]


def test_health_and_server_metadata(app: App) -> None:
    assert app.client.get("/v2/health/live").json() == {"live": True}
    assert app.client.get("/v2/health/ready").json() == {"ready": True}
    assert app.client.get("/v2/models/m/ready").json() == {"name": "m", "ready": True}
    metadata = app.client.get("/v2").json()
    assert metadata["name"] == "contender"
    assert metadata["extensions"] == ["binary_tensor_data"]
    assert isinstance(metadata["version"], str)


def test_model_metadata_comes_from_the_champions_signature() -> None:
    outputs = Schema([ColSpec(DataType.double, "score")])
    for app in make_app(MIXED, outputs):
        metadata = app.client.get("/v2/models/m").json()
        assert metadata == {
            "name": "m",
            "versions": ["1"],
            "platform": "mlflow",
            "inputs": [
                {"name": "d", "datatype": "FP64", "shape": [-1]},
                {"name": "n", "datatype": "INT64", "shape": [-1]},
                {"name": "s", "datatype": "BYTES", "shape": [-1]},
                {"name": "flag", "datatype": "BOOL", "shape": [-1]},
                {"name": "maybe", "datatype": "FP32", "shape": [-1]},
            ],
            "outputs": [{"name": "score", "datatype": "FP64", "shape": [-1]}],
        }
    for app in make_app(DOUBLES, PROBABILITIES):
        metadata = app.client.get("/v2/models/m/versions/2").json()
        assert metadata["versions"] == ["2"]
        assert metadata["outputs"] == [
            {"name": "predictions", "datatype": "FP64", "shape": [-1, 2]}
        ]


def test_a_tensor_per_column_answers_and_logs_as_invocations_does() -> None:
    for app in make_app():
        answer_and_log(app)
    # The app has stopped: every answered request's record is in the store.
    v2_record, classic_record = app.records()
    assert v2_record["request_id"] == "v2-1"
    different = {"request_id", "timestamp", "routing_draw"}
    assert {k: v for k, v in v2_record.items() if k not in different} == {
        k: v for k, v in classic_record.items() if k not in different
    }
    assert v2_record["inputs"] == {"columns": ["a", "b"], "data": ROWS}
    assert v2_record["champion_predictions"] == expected()


def answer_and_log(app: App) -> None:
    response = app.infer({**by_column(), "id": "client-7"}, **{"X-Request-ID": "v2-1"})
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == "v2-1"
    assert response.headers["X-Served-By"] == "champion"
    assert response.json() == {
        "model_name": "m",
        "model_version": "1",
        "id": "client-7",
        "parameters": {"served_by": "champion", "model_version": "1", "request_id": "v2-1"},
        "outputs": [
            {"name": "predictions", "datatype": "FP64", "shape": [3, 2], "data": [0.75, 0.25,
             0.875, 0.125, 0.0, 1.0]},
        ],
    }  # fmt: skip
    split = {"dataframe_split": {"columns": ["a", "b"], "data": ROWS}}
    classic = app.client.post("/invocations", json=split, headers={"X-Request-ID": "mlflow-1"})
    assert classic.json()["predictions"] == expected()


def test_one_2d_tensor_holds_the_signatures_columns_in_order(app: App) -> None:
    matrix = {"name": "input-0", "shape": [3, 2], "datatype": "FP64", "data": ROWS}
    response = app.infer({"inputs": [matrix]})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["id"] == document["parameters"]["request_id"] == "req-0"
    assert document["outputs"][0]["data"] == list(np.ravel(expected()))
    flat = {**matrix, "data": np.ravel(ROWS).tolist()}
    assert app.infer({"inputs": [flat]}).json()["outputs"] == document["outputs"]


def test_columns_of_shape_n_by_1_in_any_order_and_int_data(app: App) -> None:
    inputs = [
        {"name": "b", "shape": [3, 1], "datatype": "INT64", "data": [[1], [2], [3]]},
        {"name": "a", "shape": [3, 1], "datatype": "FP64", "data": [[0.5], [1], [0.25]]},
    ]
    response = app.infer({"inputs": inputs})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0.5, 0.5, 0.0, 1.0, 0.75, 0.25]


def test_the_routing_key_is_the_same_as_on_invocations() -> None:
    for app in make_app():
        app.infer(by_column(), **{"X-Routing-Key": "customer-1"})
    (record,) = app.records()
    assert record["routing_key"] == "customer-1"


def test_a_signature_of_mixed_columns_gets_the_invocations_input() -> None:
    for app in make_app(MIXED, None):
        inputs = [
            column("d", [1.5, 2.5]),
            column("n", [2, 3], "INT64"),
            column("s", ["x", "y"], "BYTES"),
            column("flag", [True, False], "BOOL"),
        ]
        response = app.infer({"inputs": inputs})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [-0.5, 1.5, -1.5, 2.5]
        records = [
            {"d": 1.5, "n": 2, "s": "x", "flag": True},
            {"d": 2.5, "n": 3, "s": "y", "flag": False},
        ]
        body = {"dataframe_records": records}
        assert app.client.post("/invocations", json=body).status_code == 200
    v2_record, classic_record = app.records()
    assert v2_record["inputs"] == classic_record["inputs"]
    assert v2_record["champion_predictions"] == classic_record["champion_predictions"]


def binary_body(document: dict[str, Any], *arrays: np.ndarray[Any, Any]) -> tuple[bytes, str]:
    header = orjson.dumps(document)
    return header + b"".join(array.tobytes() for array in arrays), str(len(header))


def test_binary_tensor_data_in_and_out(app: App) -> None:
    a, b = np.array([0.25, 0.125]), np.array([0.5, 0.75])
    inputs = [
        {"name": name, "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
        for name in "ab"
    ]
    document = {"inputs": inputs, "parameters": {"binary_data_output": True}}
    body, length = binary_body(document, a, b)
    response = app.client.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": length}
    )
    assert response.status_code == 200, response.text
    header_length = int(response.headers["Inference-Header-Content-Length"])
    header = orjson.loads(response.content[:header_length])
    (output,) = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 32}
    assert "data" not in output
    values = np.frombuffer(response.content[header_length:], dtype="<f8").reshape(output["shape"])
    assert values.tolist() == [[0.75, 0.25], [0.875, 0.125]]
    # An output asked for as JSON is JSON, whatever the request's default.
    document["outputs"] = [{"name": "predictions", "parameters": {"binary_data": False}}]
    body, length = binary_body(document, a, b)
    answer = app.client.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": length}
    )
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["outputs"][0]["data"] == [0.75, 0.25, 0.875, 0.125]


def test_a_nan_in_binary_data_is_refused_like_a_null(app: App) -> None:
    inputs = [
        {"name": name, "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
        for name in "ab"
    ]
    body, length = binary_body({"inputs": inputs}, np.array([0.5, np.nan]), np.array([1.0, 2.0]))
    response = app.client.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": length}
    )
    assert response.status_code == 400
    assert "column 'a' is required by the model signature, but row 1" in response.json()["message"]


def test_a_tensor_signature_gets_its_tensor() -> None:
    for app in make_app(PROBABILITIES, None, answer=lambda data: data.sum(axis=1)):
        matrix = {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}
        response = app.infer({"inputs": [matrix]})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"] == [
            {"name": "predictions", "datatype": "FP64", "shape": [2], "data": [3.0, 7.0]}
        ]


def test_table_outputs_are_one_tensor_per_column() -> None:
    outputs = Schema([ColSpec(DataType.double, "p"), ColSpec(DataType.string, "label")])
    frame = pd.DataFrame({"p": [0.5, 0.25], "label": ["x", "y"]})
    for app in make_app(DOUBLES, outputs, answer=lambda data: frame):
        response = app.infer(by_column(ROWS[:2]))
        assert response.status_code == 200, response.text
        assert response.json()["outputs"] == [
            {"name": "p", "datatype": "FP64", "shape": [2], "data": [0.5, 0.25]},
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]},
        ]
        only = app.infer({**by_column(ROWS[:2]), "outputs": [{"name": "label"}]}).json()
        assert [output["name"] for output in only["outputs"]] == ["label"]


def test_a_model_without_output_signature_answers_predictions() -> None:
    for app in make_app(DOUBLES, None):
        assert app.client.get("/v2/models/m").json()["outputs"] == []
        output = app.infer(by_column()).json()["outputs"][0]
        assert (output["name"], output["shape"]) == ("predictions", [3, 2])


def refused(app: App, body: Any, status_code: int, message: str, path: str = INFER) -> None:
    """`body` gets the error JSON naming the problem, no model ran, nothing was logged."""
    calls = app.loader.models["1"].calls
    response = app.client.post(
        path, content=body if isinstance(body, bytes) else orjson.dumps(body)
    )
    assert response.status_code == status_code, response.text
    document = response.json()
    assert set(document) == {"error_code", "message", "error"}
    assert document["error"] == document["message"]
    assert message in document["message"], document["message"]
    assert app.loader.models["1"].calls == calls
    assert app.infer(by_column()).status_code == 200


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([column("a", [1.0], "FP65"), column("b", [1.0])], "datatype 'FP65' is not one of"),
        ([column("a", [1.0], datatype=["FP64"]), column("b", [1.0])], "datatype ['FP64'] is not"),
        (
            [column("a", [1.0], shape=[2]), column("b", [1.0, 2.0])],
            "has shape [2] (2 values), but its data holds 1",
        ),
        ([column("a", [[1.0, 2.0], [3.0]], shape=[2, 2]), column("b", [1.0])], "not a regular"),
        (
            [column("a", ["x"]), column("b", [1.0])],
            "of datatype FP64 holds values that are not numbers",
        ),
        ([column("a", [None]), column("b", [1.0])], "holds values that are not numbers"),
        ([column("a", [1.0]), column("b", [300], "INT8")], "out of the range of INT8"),
        ([column("a", [1.5], "INT64"), column("b", [1.0])], "not integers"),
        ([column("a", [1.0], "BOOL"), column("b", [1.0])], "not booleans"),
        (
            [column("a", [1.0]), column("b", [1.0, 2.0])],
            "different numbers of rows: a has 1, b has 2",
        ),
        ([column("a", [1.0]), column("a", [1.0])], "tensor 'a' is sent twice"),
        ([column("a", [1.0])], "Model is missing inputs ['b']"),
        (
            [column("a", [1.0, 2.0], shape=[1, 2]), column("b", [1.0])],
            "a column's tensor has shape [n] or [n, 1]",
        ),
        (
            [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}],
            "one column per signature input, 2 (a, b)",
        ),
        ([{"name": "x", "shape": [1], "datatype": "FP64"}], "has no `data`"),
        ([{"shape": [1], "datatype": "FP64", "data": [1]}], "input 0 needs a string `name`"),
        ([{"name": "a", "shape": [-1], "datatype": "FP64", "data": [1]}], "needs a `shape`"),
        ([column("a", []), column("b", [])], "the request has no rows"),
    ],
)
def test_bad_tensors_are_400s_that_name_the_problem(
    app: App, inputs: list[dict[str, Any]], message: str
) -> None:
    refused(app, {"inputs": inputs}, 400, message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        ([], "must be a JSON object"),
        ({"inputs": []}, "`inputs` must be a non-empty list"),
        ({**by_column(), "id": 3}, "`id` must be a string"),
        (
            {**by_column(), "outputs": [{"name": "nope"}]},
            "unknown output 'nope': the outputs are predictions",
        ),
        ({**by_column(), "parameters": {"binary_data_output": "yes"}}, "must be true or false"),
    ],
)
def test_bad_requests_are_400s(app: App, body: Any, message: str) -> None:
    refused(app, body, 400, message)


def test_binary_data_that_does_not_add_up_is_a_400(app: App) -> None:
    inputs = [
        {"name": name, "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
        for name in "ab"
    ]
    body, length = binary_body({"inputs": inputs}, np.array([1.0, 2.0]))
    headers = {"Inference-Header-Content-Length": length}
    response = app.client.post(INFER, content=body, headers=headers)
    assert response.status_code == 400
    assert "runs past the end of the body" in response.json()["message"]
    body, length = binary_body({"inputs": inputs}, np.ones(2), np.ones(2), np.ones(1))
    response = app.client.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": length}
    )
    assert "8 bytes of binary data that no tensor" in response.json()["message"]
    assert app.store.records == []


def test_unknown_models_and_versions_are_404s(app: App) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready", "/v2/models/m/versions/9/ready"):
        response = app.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error_code"] == "NOT_FOUND"
    refused(app, by_column(), 404, "model 'other' is not served here", "/v2/models/other/infer")
    refused(app, by_column(), 404, "no version '9' loaded (loaded: champion 1, challenger 2)",
            "/v2/models/m/versions/9/infer")  # fmt: skip
    versioned = app.client.post("/v2/models/m/versions/2/infer", json=by_column())
    assert versioned.json()["model_version"] == "1"  # the router decides who answers
    assert app.client.get("/v2/models/m/versions/2/ready").status_code == 200


def test_no_champion_is_503_but_the_server_is_live() -> None:
    for app in make_app(champion=False):
        assert app.client.get("/v2/health/live").status_code == 200
        for path in ("/v2/health/ready", "/v2/models/m", "/v2/models/m/ready"):
            response = app.client.get(path)
            assert response.status_code == 503, path
            assert response.json()["error_code"] == "NO_CHAMPION"
        response = app.infer(by_column())
        assert response.status_code == 503
        assert "no champion loaded" in response.json()["error"]


def test_a_champion_failure_is_a_500_and_is_logged() -> None:
    for app in make_app(broken=frozenset({"1"})):
        response = app.infer(by_column(), **{"X-Request-ID": "failed"})
        assert response.status_code == 500
        assert response.json()["error_code"] == "MODEL_ERROR"
    (record,) = app.records()
    assert record["request_id"] == "failed"
    assert record["champion_error"] == "RuntimeError: boom"


def test_compressed_bodies_are_415(app: App) -> None:
    response = app.client.post(INFER, json=by_column(), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 415


def test_metrics_count_v2_requests_like_any_other(app: App) -> None:
    for _ in range(2):
        app.infer(by_column())
    app.client.post("/invocations", json={"dataframe_split": {"columns": ["a", "b"], "data": ROWS}})
    exposition = app.client.get("/metrics").text
    assert 'contender_requests_total{arm="champion",version="1"} 3.0' in exposition


def test_binary_bytes_and_bool_tensors_are_read() -> None:
    for app in make_app(MIXED, None):
        strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"x", b"yz"))
        arrays = [np.array([1.5, 2.5]), np.array([2, 3], dtype="<i8"), np.array([True, False])]
        inputs = [
            {"name": "d", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}},
            {
                "name": "n",
                "shape": [2],
                "datatype": "INT64",
                "parameters": {"binary_data_size": 16},
            },
            {
                "name": "s",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(strings)},
            },
            {
                "name": "flag",
                "shape": [2],
                "datatype": "BOOL",
                "parameters": {"binary_data_size": 2},
            },
        ]
        header = orjson.dumps({"inputs": inputs})
        body = header + arrays[0].tobytes() + arrays[1].tobytes() + strings + arrays[2].tobytes()
        headers = {"Inference-Header-Content-Length": str(len(header))}
        response = app.client.post(INFER, content=body, headers=headers)
        assert response.status_code == 200, response.text
    (record,) = app.records()
    assert record["inputs"]["data"] == [[1.5, 2, "x", True], [2.5, 3, "yz", False]]
