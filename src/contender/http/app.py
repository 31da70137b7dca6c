"""create_app(services): the Starlette application, its routes and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from contender.compose import Services
from contender.http import admin, openapi, scoring, status, v2
from contender.http.dashboard import routes as dashboard_routes
from contender.http.problems import EXCEPTION_HANDLERS


def create_app(services: Services) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        services.writer.start()
        services.live.start()
        # Load before listening: with --workers N every process that accepts a request
        # has its models (or knows the registry has none, or cannot be reached).
        await services.watcher.poll()
        # Everything built so far (models, MLflow, pandas) lives as long as the process:
        # moving it out of the collector's generations keeps GC pauses off request tails.
        gc.freeze()
        interval_s = services.settings.poll_interval
        poller = asyncio.create_task(services.watcher.run(interval_s, initial_delay_s=interval_s))
        try:
            yield
        finally:
            # Stop polling, let answered requests finish their records, then drain the log.
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await services.router.aclose()
            await asyncio.to_thread(services.writer.close)
            services.live.close()
            services.shutdown_executors()
            services.store.close()

    routes = [
        Route("/invocations", scoring.invocations, methods=["POST"]),
        Route("/feedback", scoring.feedback, methods=["POST"]),
        Route("/ping", status.ping, methods=["GET"]),
        Route("/health", status.ping, methods=["GET"]),
        Route("/ready", status.ready, methods=["GET"]),
        Route("/version", status.versions, methods=["GET"]),
        Route("/status", status.status, methods=["GET"]),
        Route("/metrics", status.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi, methods=["GET"]),
        Route("/admin/reload", admin.reload, methods=["POST"]),
        Route("/admin/routing", admin.routing, methods=["PUT"]),
        *v2.routes(),
        *dashboard_routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.services = services
    return app
