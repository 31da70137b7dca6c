"""Open Inference Protocol (KServe / MLServer / Triton "V2") REST endpoints.

Inference goes through the very steps of `/invocations` (`scoring.py`): one routing
snapshot, the champion's signature checks (`protocol.parse_document` on the document
`v2_tensors` builds), one `ScoringRequest` through the router; so the same routing
(`X-Routing-Key`), the same record in the prediction log, the same metrics, and the same
`X-Request-ID` semantics. The request's `id` is echoed as the answer's `id` (the request
id when it has none) but is not the request id: V2 clients reuse ids such as "1", and the
log keeps one record per request id.

`{model}` is the served registered model; `/versions/{version}` names the champion's or
the challenger's version (anything else is a 404). A versioned infer is routed like any
other: the router, not the path, decides which version answers, and the answer says which.

Errors have `/invocations`' shape, `{"error_code", "message"}`, plus `error` (the same
message), the key V2 clients read. Answers are JSON unless binary output was asked for
(`binary_data_output`, or an output's `binary_data`), as tritonclient does by default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial, wraps
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contender import __version__, protocol
from contender.compose import Services
from contender.errors import BadRequest, ContenderError, NotFound, UnsupportedMediaType
from contender.http import scoring, v2_tensors
from contender.http.body import read_body
from contender.http.problems import contender_error, unexpected_error
from contender.jsonio import dumps
from contender.models import LoadedModel
from contender.routing.router import Answer
from contender.routing.table import Arm, RoutingTable

BINARY_HEADER = "Inference-Header-Content-Length"
_BINARY_TYPE = "application/octet-stream"

Endpoint = Callable[[Request], Awaitable[Response]]


def _v2(endpoint: Endpoint) -> Endpoint:
    """The app's error answers, with the V2 `error` key beside `error_code` and `message`."""

    @wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as error:
            if isinstance(error, ContenderError):
                response = await contender_error(request, error)
            else:
                response = await unexpected_error(request, error)
        document = orjson.loads(response.body)
        document["error"] = document["message"]
        return Response(dumps(document), response.status_code, media_type=protocol.JSON_TYPE)

    return answer


def _json(document: object, status_code: int = 200) -> Response:
    return Response(dumps(document), status_code, media_type=protocol.JSON_TYPE)


@_v2
async def live(_request: Request) -> Response:
    return _json({"live": True})


@_v2
async def ready(request: Request) -> Response:
    services: Services = request.app.state.services
    scoring.champion_of(services, services.router.snapshot())
    return _json({"ready": True})


@_v2
async def server_metadata(_request: Request) -> Response:
    return _json(
        {"name": "contender", "version": __version__, "extensions": ["binary_tensor_data"]}
    )


@_v2
async def model_metadata(request: Request) -> Response:
    services: Services = request.app.state.services
    table = services.router.snapshot()
    model = _named_model(request, services, table)
    return _json(
        {
            "name": services.settings.model,
            "versions": [model.ref.version],
            "platform": "mlflow",
            "inputs": v2_tensors.input_metadata(model.input_schema),
            "outputs": v2_tensors.output_metadata(_output_schema(model)),
        }
    )


@_v2
async def model_ready(request: Request) -> Response:
    services: Services = request.app.state.services
    table = services.router.snapshot()
    _named_model(request, services, table)
    return _json({"name": services.settings.model, "ready": True})


@_v2
async def infer(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    table = services.router.snapshot()
    _named_model(request, services, table)
    champion = scoring.champion_of(services, table)
    client_id, routing_key = scoring.identity(request)
    _refuse_encoded(request)
    body = await read_body(request, settings.max_body_bytes)
    read = partial(_read, body, request.headers.get(BINARY_HEADER), champion, settings.max_rows)
    wanted, parsed = await scoring.off_loop(read, len(body))
    request_id, answer = await scoring.score(services, table, parsed, client_id, routing_key)
    served = table.champion if answer.served_by is Arm.CHAMPION else table.challenger
    name = v2_tensors.single_output_name(_output_schema(served))
    outputs, chunks = v2_tensors.encode_outputs(
        v2_tensors.outputs_of(answer.predictions, name), wanted
    )
    document = {
        "model_name": settings.model,
        "model_version": answer.version,
        "id": wanted.id if wanted.id is not None else request_id,
        "parameters": _parameters(request_id, answer),
        "outputs": outputs,
    }
    headers = scoring.answer_headers(request_id, answer)
    header = dumps(document)
    if not chunks:
        return Response(header, headers=headers, media_type=protocol.JSON_TYPE)
    headers[BINARY_HEADER] = str(len(header))
    return Response(b"".join([header, *chunks]), headers=headers, media_type=_BINARY_TYPE)


def _read(
    body: bytes, header_length: str | None, champion: LoadedModel, max_rows: int
) -> tuple[v2_tensors.InferRequest, protocol.ParsedInput]:
    """The request and the model input its tensors make, checked as `/invocations` checks."""
    wanted = v2_tensors.read_request(body, header_length)
    known = v2_tensors.output_names(_output_schema(champion))
    for output in wanted.outputs:
        if output.name not in known:
            raise BadRequest(f"unknown output {output.name!r}: the outputs are {', '.join(known)}")
    spec = champion.input_spec
    document = v2_tensors.document_of(wanted.inputs, spec)
    return wanted, protocol.parse_document(document, spec, max_rows)


def _parameters(request_id: str, answer: Answer) -> dict[str, str]:
    return {
        "served_by": answer.served_by.value,
        "model_version": answer.version,
        "request_id": request_id,
    }


def _refuse_encoded(request: Request) -> None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported: send it plain")


def _named_model(request: Request, services: Services, table: RoutingTable) -> LoadedModel:
    """The model the path names: the champion, or with `/versions/{v}` the slot holding v."""
    name = request.path_params["model"]
    served = services.settings.model
    if name != served:
        raise NotFound(f"model {name!r} is not served here; this service serves {served!r}")
    version = request.path_params.get("version")
    if version is None:
        return scoring.champion_of(services, table)
    slots = {"champion": table.champion, "challenger": table.challenger}
    for model in slots.values():
        if model is not None and model.ref.version == version:
            return model
    loaded = ", ".join(f"{slot} {m.ref.version}" for slot, m in slots.items() if m is not None)
    raise NotFound(f"model {name!r} has no version {version!r} loaded (loaded: {loaded or 'none'})")


def _output_schema(model: LoadedModel | None) -> Any:
    """The signature's outputs: a pyfunc's metadata has them (None for other models)."""
    metadata = getattr(model.model, "metadata", None) if model is not None else None
    get_output_schema = getattr(metadata, "get_output_schema", None)
    return get_output_schema() if callable(get_output_schema) else None


def routes() -> list[Route]:
    model = "/v2/models/{model}"
    version = model + "/versions/{version}"
    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        *(Route(path, model_metadata, methods=["GET"]) for path in (model, version)),
        *(Route(f"{path}/ready", model_ready, methods=["GET"]) for path in (model, version)),
        *(Route(f"{path}/infer", infer, methods=["POST"]) for path in (model, version)),
    ]
