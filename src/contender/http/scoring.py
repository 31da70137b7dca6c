"""POST /invocations (MLflow's scoring protocol) and POST /feedback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from contender import protocol
from contender.compose import Services
from contender.errors import BadRequest, NoChampion, StoreUnavailable
from contender.http.body import read_body
from contender.jsonio import dumps
from contender.models import LoadedModel
from contender.predictions.record import Feedback
from contender.routing.router import Answer, ScoringRequest
from contender.routing.table import RoutingTable

T = TypeVar("T")

# Bodies above this are parsed in a worker thread so they never stall other requests.
_PARSE_INLINE_MAX_BYTES = 64 * 1024
# The log's columns for them (`predictions/schema.py`): PostgreSQL refuses longer values,
# and with them the whole batch of records they were written in.
_MAX_REQUEST_ID_CHARS = 128
_MAX_ROUTING_KEY_CHARS = 256


async def invocations(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    table = services.router.snapshot()
    champion = champion_of(services, table)
    client_id, routing_key = identity(request)
    body = await read_body(request, settings.max_body_bytes)
    parse = partial(
        protocol.parse,
        body,
        request.headers.get("content-type"),
        champion.input_spec,
        settings.max_rows,
    )
    parsed = await off_loop(parse, len(body))
    request_id, answer = await score(services, table, parsed, client_id, routing_key)
    document = {
        "predictions": answer.predictions,
        "request_id": request_id,
        "served_by": answer.served_by.value,
        "model_version": answer.version,
    }
    headers = answer_headers(request_id, answer)
    return Response(dumps(document), headers=headers, media_type=protocol.JSON_TYPE)


# The steps below are every scoring protocol's (`/invocations`, V2's infer): one routing
# snapshot, the same headers, one ScoringRequest through the router, so the same record
# and metrics whatever the protocol.


def champion_of(services: Services, table: RoutingTable) -> LoadedModel:
    if table.champion is None:
        model = services.settings.model
        raise NoChampion(f"model {model!r} has no champion loaded yet; try again soon")
    return table.champion


def identity(request: Request) -> tuple[str | None, str | None]:
    """The client's `X-Request-ID` and `X-Routing-Key` (None when absent)."""
    client_id = _header(request, "X-Request-ID", _MAX_REQUEST_ID_CHARS)
    return client_id, _header(request, "X-Routing-Key", _MAX_ROUTING_KEY_CHARS)


async def off_loop(parse: Callable[[], T], body_bytes: int) -> T:
    """`parse()`, in a worker thread when the body is big enough to stall other requests."""
    return parse() if body_bytes <= _PARSE_INLINE_MAX_BYTES else await asyncio.to_thread(parse)


async def score(
    services: Services,
    table: RoutingTable,
    parsed: protocol.ParsedInput,
    client_id: str | None,
    routing_key: str | None,
) -> tuple[str, Answer]:
    """The request id (the client's, or a new one) and the router's answer."""
    request_id = client_id or services.new_request_id()
    scoring = ScoringRequest(
        request_id=request_id,
        routing_key=routing_key,
        data=parsed.data,
        params=parsed.params,
        n_rows=parsed.n_rows,
        schema=parsed.schema,
        log_inputs=partial(protocol.log_inputs, parsed.data, services.redact),
    )
    return request_id, await services.router.score(scoring, table)


def answer_headers(request_id: str, answer: Answer) -> dict[str, str]:
    return {
        "X-Request-ID": request_id,
        "X-Served-By": answer.served_by.value,
        "X-Model-Version": answer.version,
    }


def _header(request: Request, name: str, max_chars: int) -> str | None:
    value = request.headers.get(name)
    if value is not None and len(value) > max_chars:
        raise BadRequest(f"{name} is longer than {max_chars} characters")
    return value


async def feedback(request: Request) -> Response:
    services: Services = request.app.state.services
    body = await read_body(request, services.settings.max_body_bytes)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    items = _feedback_items(document, services.clock.now().isoformat(timespec="microseconds"))
    writer = services.writer
    if writer.healthy:
        try:
            unknown = await asyncio.to_thread(services.store.add_feedback, items)
        except StoreUnavailable:
            pass  # buffered below, like the records of the same outage
        else:
            answer = {"accepted": len(items), "unknown_request_ids": unknown}
            return Response(dumps(answer), media_type=protocol.JSON_TYPE)
    # The store is down: the writer keeps the labels (spilling past its bound) and stores
    # them once it is back. 202: accepted, with the request ids not checked yet.
    writer.submit_labels(items)
    answer = {"accepted": len(items), "unknown_request_ids": [], "buffered": True}
    return Response(dumps(answer), status_code=202, media_type=protocol.JSON_TYPE)


def _feedback_items(document: Any, received_at: str) -> list[Feedback]:
    entries = document if isinstance(document, list) else [document]
    items: list[Feedback] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("request_id"), str):
            raise BadRequest(f"feedback entry {position} needs a string `request_id`")
        if len(entry["request_id"]) > _MAX_REQUEST_ID_CHARS or "\x00" in entry["request_id"]:
            # No request has such an id (PostgreSQL would refuse to store it, too).
            raise BadRequest(
                f"feedback entry {position}: `request_id` is not a request id (more than "
                f"{_MAX_REQUEST_ID_CHARS} characters, or a NUL)"
            )
        if "label" not in entry:
            raise BadRequest(f"feedback entry {position} has no `label`")
        label = entry["label"]
        labels = label if isinstance(label, list) else [label]
        items.extend(
            Feedback(entry["request_id"], row, value, received_at)
            for row, value in enumerate(labels)
        )
    return items
