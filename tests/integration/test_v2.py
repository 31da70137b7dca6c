"""A V2 client nobody here wrote, tritonclient's HTTP client, against a real service: it
sees a live server, the model's signature, and the very answers and records of
`/invocations`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import STAGES_MODEL, Registered, Service, ServiceFactory
from tests.integration.models import FEATURES
from tests.integration.test_serving import stored_records

pytestmark = pytest.mark.integration

# The record's fields that differ between two requests of the same rows.
_PER_REQUEST = {"request_id", "timestamp", "champion_latency_ms"}


@pytest.fixture(scope="module")
def champion_only(
    start_service: ServiceFactory, mlflow_url: str, registered: Registered
) -> Service:
    return start_service("--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--no-testing")


@pytest.fixture
def client(champion_only: Service) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=champion_only.url.removeprefix("http://"))
    yield client
    client.close()


def test_the_server_and_the_model_are_live_ready_and_described(
    client: triton.InferenceServerClient, registered: Registered
) -> None:
    champion_version, _ = registered.versions[STAGES_MODEL]
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(STAGES_MODEL)
    assert client.is_model_ready(STAGES_MODEL, champion_version)
    assert not client.is_model_ready("not-served")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    metadata = client.get_model_metadata(STAGES_MODEL)
    assert metadata["name"] == STAGES_MODEL
    assert metadata["versions"] == [champion_version]
    assert metadata["platform"] == "mlflow"
    assert metadata["inputs"] == [
        {"name": name, "datatype": "FP64", "shape": [-1]} for name in FEATURES
    ]
    assert metadata["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1, 2]}]
    with pytest.raises(InferenceServerException, match="is not served here"):
        client.get_model_metadata("not-served")


def by_column(rows: Any, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name in FEATURES:
        tensor = triton.InferInput(name, [len(rows)], "FP64")
        tensor.set_data_from_numpy(rows[name].to_numpy(), binary_data=binary)
        inputs.append(tensor)
    return inputs


def as_matrix(rows: Any, binary: bool) -> list[triton.InferInput]:
    tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows.to_numpy(), binary_data=binary)
    return [tensor]


def test_infer_answers_and_logs_as_invocations_does(
    client: triton.InferenceServerClient, champion_only: Service, registered: Registered
) -> None:
    champion_version, _ = registered.versions[STAGES_MODEL]
    rows = registered.trained.rows.head(6)
    classic = httpx.post(
        f"{champion_only.url}/invocations",
        json={"dataframe_split": rows.to_dict(orient="split")},
        headers={"X-Request-ID": "classic"},
        timeout=30,
    )
    assert classic.status_code == 200, classic.text
    expected = np.array(classic.json()["predictions"])
    cases = {
        # tritonclient's defaults: binary tensors in, binary outputs back.
        "v2-columns-binary": (by_column(rows, binary=True), None),
        "v2-matrix-binary": (as_matrix(rows, binary=True), None),
        "v2-columns-json": (
            by_column(rows, binary=False),
            [triton.InferRequestedOutput("predictions", binary_data=False)],
        ),
        "v2-matrix-json": (
            as_matrix(rows, binary=False),
            [triton.InferRequestedOutput("predictions", binary_data=False)],
        ),
    }
    for request_id, (inputs, outputs) in cases.items():
        result = client.infer(
            STAGES_MODEL,
            inputs,
            outputs=outputs,
            request_id=f"client-{request_id}",
            headers={"X-Request-ID": request_id},
        )
        predictions = result.as_numpy("predictions")
        assert predictions is not None
        assert predictions.shape == expected.shape
        np.testing.assert_array_equal(predictions, expected)  # bit for bit
        response = result.get_response()
        assert response["id"] == f"client-{request_id}"
        assert response["model_version"] == champion_version
        assert response["parameters"] == {
            "served_by": "champion",
            "model_version": champion_version,
            "request_id": request_id,
        }
    # One record per request (the metadata calls log nothing), each with every field of
    # the /invocations request's record on the same rows.
    records = stored_records(champion_only, len(cases) + 1, frozenset({"classic", *cases}))
    assert len(records) == len(cases) + 1
    reference = {k: v for k, v in records["classic"].items() if k not in _PER_REQUEST}
    for request_id in cases:
        record = records[request_id]
        assert {k: v for k, v in record.items() if k not in _PER_REQUEST} == reference
        assert record.keys() == records["classic"].keys()
        assert record["champion_latency_ms"] > 0
    assert reference["inputs"] == {"columns": FEATURES, "data": rows.to_numpy().tolist()}


def test_a_bad_tensor_is_a_400_the_client_can_read(
    client: triton.InferenceServerClient, registered: Registered
) -> None:
    rows = registered.trained.rows.head(2)
    inputs = by_column(rows, binary=False)[:3]
    with pytest.raises(InferenceServerException, match="missing inputs") as raised:
        client.infer(STAGES_MODEL, inputs)
    assert raised.value.status() == "400"
