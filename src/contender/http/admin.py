"""POST /admin/reload and PUT /admin/routing, behind a bearer token."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
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
from contender.registry.routing_tag import InvalidRouting, check_testing, check_weight

_log = logging.getLogger(__name__)

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
    """Write the routing tag (revision + 1) and apply it here; 503 when the registry
    refuses, and then nothing changed anywhere."""
    services: Services = request.app.state.services
    try:
        document = orjson.loads(await read_body(request, 64 * 1024))
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    weight, testing = _routing_change(document)
    try:
        routing = await services.watcher.change_routing(weight, testing)
    except Exception as error:
        _log.warning("routing change refused by the registry: %s: %s", type(error).__name__, error)
        return problem(
            503,
            "REGISTRY_UNAVAILABLE",
            f"the registry refused the routing change, nothing changed: {type(error).__name__}",
        )
    return Response(dumps(asdict(routing)), media_type=protocol.JSON_TYPE)


def _routing_change(document: object) -> tuple[float | None, bool | None]:
    if not isinstance(document, dict) or not document.keys() & {"challenger_weight", "testing"}:
        raise BadRequest('expected {"challenger_weight": w, "testing": true|false}')
    unknown = document.keys() - {"challenger_weight", "testing"}
    if unknown:
        raise BadRequest(f"unknown routing fields: {sorted(unknown)}")
    weight = document.get("challenger_weight")
    testing = document.get("testing")
    try:
        return (
            None if weight is None else check_weight(weight),
            None if testing is None else check_testing(testing),
        )
    except InvalidRouting as error:
        raise BadRequest(str(error)) from error
