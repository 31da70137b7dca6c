"""GET /dashboard: one live page, its script and style, and the JSON it polls.

The page is plain HTML, CSS and JavaScript shipped in `http/static/` and served from
here: no asset from another host (the Content-Security-Policy says so to the browser
as well), its charts inline SVG drawn by its own script. Viewing needs no token; the
routing form sends `PUT /admin/routing` with the token typed into the page.

`/dashboard/data` is everything the page shows: what `/status` says of the slots,
routing, breaker, reloads and log store, plus this process's `LiveSeries` (with
`--workers N` each worker answers with its own numbers, and says which it is).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict
from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contender import protocol
from contender.compose import Services
from contender.jsonio import dumps
from contender.models import LoadedModel

# Reload events the page lists, newest first.
_RELOADS_SHOWN = 10
_ASSET_TYPES = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # A new release's page, not a cached one, after an upgrade.
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return files("contender.http").joinpath("static", name).read_bytes()


def _asset_response(name: str) -> Response:
    return Response(_asset(name), media_type=_ASSET_TYPES[name], headers=_PAGE_HEADERS)


async def page(_request: Request) -> Response:
    return _asset_response("dashboard.html")


async def script(_request: Request) -> Response:
    return _asset_response("dashboard.js")


async def style(_request: Request) -> Response:
    return _asset_response("dashboard.css")


def _slot(model: LoadedModel | None) -> dict[str, object] | None:
    return model.describe() if model is not None else None


async def data(request: Request) -> Response:
    services: Services = request.app.state.services
    # Folding the latest records and summing 90 buckets takes a few ms: not on the loop.
    live = await asyncio.to_thread(services.live.snapshot)
    table = services.holder.current
    watcher = services.watcher
    document = {
        "model": services.settings.model,
        "pid": os.getpid(),
        "workers": services.settings.workers,
        "admin_enabled": bool(services.settings.admin_token),
        "champion": _slot(table.champion),
        "challenger": _slot(table.challenger),
        "routing": {
            "testing": table.testing,
            "challenger_weight": table.challenger_weight,
            "revision": table.routing_revision,
            "error": watcher.routing_error,
        },
        "last_poll_at": watcher.last_poll_at,
        "last_poll_error": watcher.last_poll_error,
        "load_errors": dict(watcher.slot_errors),
        "breaker": services.router.breaker_status(),
        "log_store": services.writer.status(),
        "reloads": [asdict(event) for event in reversed(watcher.events)][:_RELOADS_SHOWN],
        "live": live,
    }
    return Response(
        dumps(document), media_type=protocol.JSON_TYPE, headers={"Cache-Control": "no-store"}
    )


def routes() -> list[Route]:
    return [
        Route("/dashboard", page, methods=["GET"]),
        Route("/dashboard/data", data, methods=["GET"]),
        Route("/dashboard/dashboard.js", script, methods=["GET"]),
        Route("/dashboard/dashboard.css", style, methods=["GET"]),
    ]
