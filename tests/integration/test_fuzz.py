"""Property-based fuzz: whatever a client sends, the answer is never a 5xx.

One real `contender serve` (a registered model with a signature: four required `double`
columns) takes thousands of generated bodies on one keep-alive connection: JSON of every
shape the scoring protocol has, filled with wrong types, nulls, NaN strings, huge
numbers, nested objects, empty lists, duplicate and unknown columns; CSV; invalid UTF-8;
random content types. Every answer must be below 500, carry no stack trace, be a JSON
`{"error_code", "message"}` when it is a 4xx, and the service must still answer a good
request afterwards. Derandomized, so a run is the same run everywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import STAGES_MODEL, Registered, Service, ServiceFactory
from tests.integration.models import FEATURES

pytestmark = pytest.mark.integration

INVOCATION_EXAMPLES = 4000
FEEDBACK_EXAMPLES = 1500
GOOD = {"dataframe_split": {"columns": FEATURES, "data": [[0.1, 0.2, 0.3, 0.4]]}}
TRACE_MARKERS = ("Traceback", 'File "')


def fuzz_settings(examples: int) -> settings:
    return settings(
        derandomize=True,
        database=None,
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- what a cell, a column name and a JSON value can be --------------------------------

NUMBER_TEXTS = ["NaN", "nan", "-NaN", "1e999", "-1e999", "Infinity", "-Infinity", "inf", "", " "]
ODD_TEXTS = ["\ud800", "\x00", "0x10", "1_000", "١٢", "\u00e9", "null", "true"]
# Lone surrogates are invalid JSON text: ODD_TEXTS has one, but not every string.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000)
odd_cells = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([1e308, -1e308, 5e-324, 2**63, -(2**63) - 1, 2**64]),
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBER_TEXTS),
    st.sampled_from(ODD_TEXTS),
    texts,
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(texts, st.integers(), max_size=2),
)
# Mostly numbers, so that many bodies get past the parser to the models.
cells = st.one_of(numbers, numbers, numbers, numbers, odd_cells)
# A body draws its cells from one pool: two in three are all numbers (the models run).
cell_pools = st.sampled_from([numbers, numbers, cells])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
column_names = st.one_of(st.sampled_from(FEATURES), texts, st.integers(-2, 5), st.none())
# Mostly the model's columns, in order, sometimes repeated, missing or joined by others.
column_lists = st.one_of(
    st.just(list(FEATURES)),
    st.just(list(FEATURES)),
    st.lists(column_names, max_size=6),
    st.permutations(FEATURES).map(list),
    st.lists(st.sampled_from(FEATURES), min_size=1, max_size=6),
)


def some(elements: st.SearchStrategy[Any], at_most: int) -> st.SearchStrategy[list[Any]]:
    """A list of 1 to `at_most` elements, and now and then none: Hypothesis favours the
    simplest value, and an empty list would make most requests ones without rows."""
    return st.integers(0, 9).flatmap(
        lambda roll: st.just([]) if roll == 9 else st.lists(elements, min_size=1, max_size=at_most)
    )


rows = some(st.lists(cells, max_size=6), at_most=4)


@st.composite
def split_documents(draw: st.DrawFn) -> dict[str, Any]:
    columns = draw(column_lists)
    width = len(columns) if draw(st.integers(0, 3)) != 3 else draw(st.integers(0, 6))
    row = st.lists(draw(cell_pools), min_size=width, max_size=width)
    document: dict[str, Any] = {"columns": columns, "data": draw(some(row, at_most=4))}
    if draw(st.integers(0, 9)) == 9:
        document[draw(st.sampled_from(["index", "extra"]))] = draw(json_values)
    return document


@st.composite
def records(draw: st.DrawFn) -> list[Any]:
    keys = draw(column_lists)
    pool = draw(cell_pools)
    count = draw(st.integers(1, 3)) if draw(st.integers(0, 9)) != 9 else 0
    return [
        {str(key): draw(pool) for key in keys}
        if draw(st.integers(0, 5)) != 5
        else draw(json_values)
        for _ in range(count)
    ]


@st.composite
def columns_object(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(column_lists)
    pool = draw(cell_pools)
    return {str(key): draw(some(pool, at_most=3) | pool) for key in keys}


payloads = st.one_of(
    st.fixed_dictionaries({"dataframe_split": split_documents() | json_values}),
    st.fixed_dictionaries({"dataframe_records": records() | json_values}),
    st.fixed_dictionaries({"instances": records() | columns_object() | rows | json_values}),
    st.fixed_dictionaries({"inputs": columns_object() | records() | rows | json_values}),
)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A scoring-protocol body, give or take: usually one format key, sometimes `params`,
    an unknown key or a second format; sometimes any JSON at all."""
    if draw(st.integers(0, 9)) == 9:
        return draw(json_values)
    document: dict[str, Any] = dict(draw(payloads))
    if draw(st.integers(0, 4)) == 4:
        document["params"] = draw(st.dictionaries(texts, json_values, max_size=3) | json_values)
    if draw(st.integers(0, 6)) == 6:
        document[draw(st.sampled_from(["unknown", "dataframe_split", "inputs", "x"]))] = draw(
            json_values
        )
    return document


def csv_text(columns: list[Any], data: list[list[Any]]) -> str:
    lines = [",".join(str(name) for name in columns)]
    lines += [",".join("" if cell is None else str(cell) for cell in row) for row in data]
    return "\n".join(lines) + "\n"


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=UTF-8",
    "application/json; charset=latin-1",
    "application/json; format=pandas-split",
    "application/json;",
    "APPLICATION/JSON",
    "text/csv",
    "text/csv; charset=utf-8",
    "application/vnd.apache.parquet",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    "*/*",
    ";;;",
]


# Weighted: a JSON body usually says so plainly.
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/json"]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """(body, content type): mostly JSON, then CSV, then bytes of any kind."""
    kind = draw(st.sampled_from(["json"] * 6 + ["csv", "csv", "bytes", "mangled"]))
    if kind == "csv":
        table = draw(split_documents())
        content = csv_text(table["columns"], table["data"]).encode(errors="surrogatepass")
        content_type = draw(st.sampled_from(["text/csv", "text/csv; charset=utf-8"]))
    elif kind == "bytes":
        content = draw(st.binary(max_size=64))
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    else:
        # The standard library writes big integers, NaN and Infinity as they come.
        content = json.dumps(draw(documents())).encode()
        odd_type = draw(st.integers(0, 9)) == 9
        content_type = draw(st.sampled_from(CONTENT_TYPES if odd_type else JSON_TYPES))
    if kind == "mangled" and content:
        # Invalid UTF-8, a truncation, or both.
        at = draw(st.integers(0, len(content)))
        content = content[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b""]))
    return content, (None if draw(st.integers(0, 30)) == 30 else content_type)


header_characters = st.characters(min_codepoint=33, max_codepoint=126)
# Now and then longer than the log's columns for them (128 and 256 characters).
header_text = st.text(header_characters, max_size=12) | st.text(
    header_characters, min_size=120, max_size=300
)


# --- the service and what every answer must be -------------------------------------------


@pytest.fixture(scope="module")
def service(start_service: ServiceFactory, registered: Registered, mlflow_url: str) -> Service:
    return start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--max-rows", "3",
        "--challenger-weight", "0.5",
    )  # fmt: skip


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[httpx.Client]:
    # One keep-alive connection: a refusal must leave it fit for the next request.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=service.url, timeout=30.0, limits=limits) as client:
        yield client


def check(response: httpx.Response) -> None:
    text = response.text
    assert response.status_code < 500, f"{response.status_code}: {text}"
    for marker in TRACE_MARKERS:
        assert marker not in text, text
    if response.status_code == 200 and response.url.path == "/invocations":
        assert set(response.json()) == {"predictions", "request_id", "served_by", "model_version"}
    if response.status_code >= 400:
        document = response.json()
        assert set(document) == {"error_code", "message"}, text
        assert isinstance(document["error_code"], str)
        assert isinstance(document["message"], str)
        assert document["message"]


def answers_a_good_request(client: httpx.Client) -> None:
    response = client.post("/invocations", json=GOOD)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


class Tally:
    """How many answers of each status the fuzz got, and on which connections."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.connections: set[object] = set()
        """The client ends (address, port) the answers came on: one, if none was closed."""
        self.started = time.monotonic()

    def add(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        stream = response.extensions["network_stream"]
        self.connections.add(stream.get_extra_info("client_addr"))

    def finish(self, what: str) -> None:
        """Print the numbers (seen with -s) and check that no connection was replaced."""
        seconds = time.monotonic() - self.started
        total = sum(self.statuses.values())
        print(f"\nfuzz {what}: {total} requests in {seconds:.1f} s, by status {self.statuses}")
        # Every refusal left the keep-alive connection open for the next request.
        assert len(self.connections) == 1, self.connections


def test_no_invocation_body_gets_a_5xx(client: httpx.Client, service: Service) -> None:
    tally = Tally()

    @fuzz_settings(INVOCATION_EXAMPLES)
    @given(body=bodies(), request_id=st.none() | header_text, key=st.none() | header_text)
    def invoke(body: tuple[bytes, str | None], request_id: str | None, key: str | None) -> None:
        content, content_type = body
        headers = {"Content-Type": content_type} if content_type is not None else {}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        if key is not None:
            headers["X-Routing-Key"] = key
        response = client.post("/invocations", content=content, headers=headers)
        tally.add(response)
        check(response)

    invoke()
    tally.finish("/invocations")
    answers_a_good_request(client)
    # Every kind of answer came up: the fuzz reached the models, not just the parser.
    assert {200, 400, 413, 415} <= tally.statuses.keys()
    # Nothing reached the catch-all handler, not even on the way out.
    assert "unexpected error" not in service.process.output()


feedback_entries = st.one_of(
    st.fixed_dictionaries({"request_id": texts | json_values, "label": json_values | cells}),
    st.fixed_dictionaries({"request_id": texts}),
    st.fixed_dictionaries({"label": cells}),
    json_values,
)
feedback_documents = feedback_entries | st.lists(feedback_entries, max_size=4)


@st.composite
def feedback_bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 9:
        return draw(st.binary(max_size=32))
    return json.dumps(draw(feedback_documents)).encode()


def test_no_feedback_body_gets_a_5xx(client: httpx.Client) -> None:
    tally = Tally()

    @fuzz_settings(FEEDBACK_EXAMPLES)
    @given(content=feedback_bodies(), content_type=st.sampled_from(CONTENT_TYPES))
    def send(content: bytes, content_type: str) -> None:
        response = client.post("/feedback", content=content, headers={"Content-Type": content_type})
        tally.add(response)
        check(response)

    send()
    tally.finish("/feedback")
    answers_a_good_request(client)
    assert {200, 400} <= tally.statuses.keys()
