"""A client's mistake is a 400 that names it, never a 500 (SPEC section 3).

The models here are fakes that count their calls, behind a real MLflow signature: every
refusal must come before any model runs.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from mlflow.types import ColSpec, DataType, Schema
from starlette.testclient import TestClient

from contender.compose import build_services
from contender.http.app import create_app
from contender.models import LoadedModel, ModelRef
from contender.settings import Settings
from contender.signature import InputSpec
from tests.fakes import FakeClock, FakeModel, FakeRegistryClient, ListStore, model_ref
from tests.support import poll_until

DOUBLES = Schema([ColSpec(DataType.double, name) for name in ("a", "b")])
MIXED = Schema(
    [
        ColSpec(DataType.double, "d"),
        ColSpec(DataType.long, "n"),
        ColSpec(DataType.string, "s"),
        ColSpec(DataType.double, "maybe", required=False),
    ]
)
GOOD = {"dataframe_split": {"columns": ["a", "b"], "data": [[0.25, 0.5]]}}


class SignedLoader:
    """Hands out counting FakeModels that carry `schema` as their signature."""

    def __init__(self, schema: Schema | None) -> None:
        self.downloads = 0
        self.models: dict[str, FakeModel] = {}
        self._spec = InputSpec.of(schema)

    def __call__(self, ref: ModelRef) -> LoadedModel:
        self.downloads += 1
        model = self.models[ref.version] = FakeModel(score=lambda row: 0.5)
        return LoadedModel(ref, model, FakeClock().now(), input_spec=self._spec)

    @property
    def calls(self) -> int:
        """The champion's calls. It runs before its answer, and with it the challenger
        (whose calls may land later, in the background)."""
        return self.models["1"].calls


@dataclass
class App:
    client: TestClient
    loader: SignedLoader
    store: ListStore
    good: bytes
    """A body this app answers."""

    def post(self, body: bytes, content_type: str = "application/json") -> Any:
        return self.client.post(
            "/invocations", content=body, headers={"content-type": content_type}
        )


def make_app(schema: Schema | None, good: Any = GOOD) -> Iterator[App]:
    ids = itertools.count()
    loader = SignedLoader(schema)
    store = ListStore()
    services = build_services(
        Settings(model="m", challenger_weight=0.0), clock=FakeClock(), rng=random.Random(1),
        registry_client=FakeRegistryClient(model_ref("m", "1"), model_ref("m", "2")),
        loader=loader, store=store, new_request_id=lambda: f"req-{next(ids)}",
    )  # fmt: skip
    with TestClient(create_app(services)) as client:
        yield App(client, loader, store, orjson.dumps(good))


@pytest.fixture
def doubles() -> Iterator[App]:
    yield from make_app(DOUBLES)


@pytest.fixture
def mixed() -> Iterator[App]:
    yield from make_app(MIXED, {"dataframe_records": [{"d": 1.5, "n": 2, "s": "x"}]})


def refused(app: App, body: bytes, names: str, content_type: str = "application/json") -> None:
    """`body` gets a 400 JSON problem naming `names`, no model ran, and the service serves on."""
    calls = app.loader.calls
    response = app.post(body, content_type)
    assert response.status_code == 400, response.text
    document = response.json()
    assert set(document) == {"error_code", "message"}
    assert document["error_code"] == "BAD_REQUEST"
    assert names in document["message"], document["message"]
    assert app.loader.calls == calls
    assert app.post(app.good).status_code == 200


def split(data: list[list[Any]], columns: tuple[str, ...] = ("a", "b")) -> bytes:
    return orjson.dumps({"dataframe_split": {"columns": list(columns), "data": data}})


@pytest.mark.parametrize(
    ("columns", "row"),
    [
        (("a", "b", "a"), [0.1, 0.2, 0.3]),
        (("a", "a"), [0.1, 0.2]),
        (("a", "b", "b", "a"), [1, 2, 3, 4]),
    ],
    ids=["an-extra-one", "one-for-a-missing-column", "two"],
)
def test_duplicate_column_names_are_named(
    doubles: App, columns: tuple[str, ...], row: list[float]
) -> None:
    expected = "a, b" if len(columns) == 4 else "a"
    refused(doubles, split([row], columns), f"duplicate column names: {expected}")


@pytest.mark.parametrize(
    "document",
    [
        {"instances": {"a": [0.25], "b": [0.5]}},
        {"instances": {"a": 0.25, "b": 0.5}},
        {"inputs": {"a": [0.25], "b": [0.5]}},
        {"inputs": [{"a": 0.25, "b": 0.5}]},
        {"instances": [{"a": 0.25, "b": 0.5}]},
    ],
    ids=["instances-columns", "instances-scalars", "inputs-columns", "inputs-rows", "instances"],
)
def test_objects_of_columns_are_read_as_mlflow_reads_them(doubles: App, document: Any) -> None:
    # `mlflow models serve` takes a dict of columns for `instances` and `inputs` alike.
    response = doubles.post(orjson.dumps(document))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [[0.5, 0.5]]


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ({"instances": {"a": [[1.0]], "b": [0.5]}}, "'a'"),
        ({"instances": {"a": [0.1, 0.2], "b": [0.5]}}, "length"),
        ({"instances": {"a": {"x": 1}, "b": [0.5]}}, "float"),
        ({"inputs": {"a": [[1.0], 2], "b": [0.5, 0.5]}}, "inhomogeneous"),
    ],
    ids=["nested-list", "ragged", "nested-object", "mixed-nesting"],
)
def test_objects_mlflow_cannot_read_are_refused(doubles: App, document: Any, names: str) -> None:
    refused(doubles, orjson.dumps(document), names)


BAD_NUMBERS = [None, "NaN", "nan", "1e999", "Infinity", "-Infinity", "-inf"]


@pytest.mark.parametrize("cell", BAD_NUMBERS)
@pytest.mark.parametrize("shape", ["split", "records", "instances", "inputs", "csv"])
def test_a_missing_number_in_a_required_column_is_refused(
    doubles: App, cell: Any, shape: str
) -> None:
    rows = [{"a": 0.1, "b": 0.2}, {"a": 0.3, "b": cell}]
    if shape == "csv":
        text = "a,b\n0.1,0.2\n0.3," + ("" if cell is None else str(cell)) + "\n"
        refused(doubles, text.encode(), "column 'b'", "text/csv")
        return
    documents = {
        "split": {"dataframe_split": {"columns": ["a", "b"], "data": [[0.1, 0.2], [0.3, cell]]}},
        "records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs": {"inputs": {"a": [0.1, 0.3], "b": [0.2, cell]}},
    }
    refused(doubles, orjson.dumps(documents[shape]), "column 'b'")
    message = doubles.post(orjson.dumps(documents[shape])).json()["message"]
    assert "row 1" in message


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"nan"])
def test_nan_and_infinity_literals_are_not_json(doubles: App, literal: bytes) -> None:
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[0.1, ' + literal + b"]]}}"
    refused(doubles, body, "not valid JSON")


def test_huge_but_finite_numbers_are_numbers(doubles: App) -> None:
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1e308, -1e308], [5e-324, %d]]}}'
    response = doubles.post(body % 2**70)
    assert response.status_code == 200, response.text


def test_every_type_follows_the_missing_value_rule(mixed: App) -> None:
    def body(**cells: Any) -> bytes:
        row = {"d": 1.5, "n": 2, "s": "x", "maybe": 0.5} | cells
        return orjson.dumps({"dataframe_records": [row]})

    assert mixed.post(body()).status_code == 200
    # An optional column may be missing, or hold a null: the model said it takes them.
    assert mixed.post(body(maybe=None)).status_code == 200
    assert mixed.post(body(maybe="NaN")).status_code == 200
    # A string "NaN" is a string.
    assert mixed.post(body(s="NaN")).status_code == 200
    refused(mixed, body(d=None), "column 'd' is required by the model signature, but row 0")
    refused(mixed, body(d="1e999"), "row 0 has Infinity")
    refused(mixed, body(n=None), "column 'n' is required by the model signature, but row 0")
    refused(mixed, body(n="NaN"), "column 'n' is required by the model signature, but row 0")
    # MLflow's reader refuses a null for a `long` without saying where: this says.
    row = {"d": 1.5, "n": None, "s": "x"}
    for document in ({"instances": row}, {"inputs": [row]}, {"instances": [row]}):
        refused(mixed, orjson.dumps(document), "column 'n' is required")
    refused(mixed, body(s=None), "column 's' is required by the model signature, but row 0")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (split([]), "application/json"),
        (b'{"dataframe_records": []}', "application/json"),
        (b'{"instances": []}', "application/json"),
        (b'{"inputs": []}', "application/json"),
        (b'{"inputs": {"a": [], "b": []}}', "application/json"),
        (b'{"dataframe_split": {"columns": [], "data": []}}', "application/json"),
        (b"a,b\n", "text/csv"),
    ],
    ids=["split", "records", "instances", "inputs", "inputs-columns", "no-columns", "csv"],
)
def test_a_request_without_rows_is_refused(doubles: App, body: bytes, content_type: str) -> None:
    refused(doubles, body, "no rows", content_type)


def test_without_a_signature_empty_requests_and_duplicates_are_still_refused() -> None:
    for app in make_app(None):
        refused(app, b'{"dataframe_split": {"columns": ["a"], "data": []}}', "no rows")
        refused(app, split([[0.1, 0.2]], ("a", "a")), "duplicate column names: a")


def test_refused_requests_are_not_logged(doubles: App) -> None:
    doubles.post(split([[None, 0.5]]))
    doubles.post(split([]))
    good = doubles.post(orjson.dumps(GOOD)).json()["request_id"]
    poll_until(lambda: doubles.store.records or None, timeout_s=5, what="the record")
    assert [record.request_id for record in doubles.store.records] == [good]


def test_ids_longer_than_the_log_keeps_are_refused(doubles: App) -> None:
    def invoke(**headers: str) -> Any:
        return doubles.client.post("/invocations", content=doubles.good, headers=JSON | headers)

    assert invoke(**{"X-Request-ID": "r" * 128}).status_code == 200
    too_long = invoke(**{"X-Request-ID": "r" * 129})
    assert too_long.status_code == 400
    assert "X-Request-ID is longer than 128 characters" in too_long.json()["message"]
    assert invoke(**{"X-Routing-Key": "k" * 257}).status_code == 400
    for request_id in ("r" * 129, "a\x00b"):
        answer = doubles.client.post("/feedback", json={"request_id": request_id, "label": 1})
        assert answer.status_code == 400
        assert "is not a request id" in answer.json()["message"]


JSON = {"content-type": "application/json"}
