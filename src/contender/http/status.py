"""Liveness, readiness, version, status and metrics."""

from __future__ import annotations

from dataclasses import asdict
from importlib.metadata import version

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from contender import __version__, protocol
from contender.compose import Services
from contender.http.problems import problem
from contender.jsonio import dumps
from contender.models import LoadedModel


def _json(document: object, status_code: int = 200) -> Response:
    return Response(dumps(document), status_code, media_type=protocol.JSON_TYPE)


async def ping(_request: Request) -> Response:
    return _json({"status": "ok"})


async def ready(request: Request) -> Response:
    services: Services = request.app.state.services
    if services.holder.current.champion is None:
        return problem(503, "NO_CHAMPION", "no champion is loaded yet")
    return _json({"status": "ready"})


async def versions(_request: Request) -> Response:
    return _json({"contender": __version__, "mlflow": version("mlflow")})


def _describe(model: LoadedModel | None) -> dict[str, object] | None:
    return model.describe() if model is not None else None


async def status(request: Request) -> Response:
    services: Services = request.app.state.services
    table = services.holder.current
    watcher = services.watcher
    return _json(
        {
            "model": services.settings.model,
            "selector": services.settings.selector.value,
            "testing": table.testing,
            "challenger_weight": table.challenger_weight,
            "routing_revision": table.routing_revision,
            "routing_error": watcher.routing_error,
            "champion": _describe(table.champion),
            "challenger": _describe(table.challenger),
            "last_poll_at": watcher.last_poll_at,
            "last_poll_error": watcher.last_poll_error,
            "breaker": services.router.breaker_status(),
            "log_store": services.writer.status(),
            "load_errors": dict(watcher.slot_errors),
            "downloads": watcher.downloads,
            "reloads": [asdict(event) for event in watcher.events],
        }
    )


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
