"""POST /admin/reload and PUT /admin/routing, behind a bearer token."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import wraps

import orjson
from starlette.requests import Request
from starlette.responses import Response

from contender import protocol
from contender.compose import Services
from contender.errors import BadRequest
from contender.http.body import read_body
from contender.http.problems import problem
from contender.jsonio import dumps

Endpoint = Callable[[Request], Awaitable[Response]]


def requires_token(endpoint: Endpoint) -> Endpoint:
    """403 when no admin token is configured, 401 when the request's is missing or wrong."""

    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        expected = request.app.state.services.settings.admin_token
        if not expected:
            return problem(403, "FORBIDDEN", "admin endpoints are off: set CONTENDER_ADMIN_TOKEN")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
            return problem(
                401,
                "UNAUTHORIZED",
                "a valid bearer token is required",
                **{"WWW-Authenticate": "Bearer"},
            )
        return await endpoint(request)

    return guarded


@requires_token
async def reload(request: Request) -> Response:
    services: Services = request.app.state.services
    changed = await services.watcher.poll()
    table = services.holder.current
    document = {
        "changed": changed,
        "champion": table.champion.ref.version if table.champion else None,
        "challenger": table.challenger.ref.version if table.challenger else None,
        "last_poll_error": services.watcher.last_poll_error,
        "load_errors": dict(services.watcher.slot_errors),
    }
    return Response(dumps(document), media_type=protocol.JSON_TYPE)


@requires_token
async def routing(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        document = orjson.loads(await read_body(request, 64 * 1024))
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    weight, testing = _routing_change(document)
    table = services.holder.update(
        lambda latest: latest.with_routing(
            latest.challenger_weight if weight is None else weight,
            latest.testing if testing is None else testing,
        )
    )
    answer = {"challenger_weight": table.challenger_weight, "testing": table.testing}
    return Response(dumps(answer), media_type=protocol.JSON_TYPE)


def _routing_change(document: object) -> tuple[float | None, bool | None]:
    if not isinstance(document, dict) or not document.keys() & {"challenger_weight", "testing"}:
        raise BadRequest('expected {"challenger_weight": w, "testing": true|false}')
    unknown = document.keys() - {"challenger_weight", "testing"}
    if unknown:
        raise BadRequest(f"unknown routing fields: {sorted(unknown)}")
    weight = document.get("challenger_weight")
    testing = document.get("testing")
    if weight is not None and (
        isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1
    ):
        raise BadRequest("challenger_weight must be a number between 0 and 1")
    if testing is not None and not isinstance(testing, bool):
        raise BadRequest("testing must be true or false")
    return (float(weight) if weight is not None else None), testing
