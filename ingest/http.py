"""The HTTP surface: `/metrics` (Prometheus), `/healthz`, and the routes other
modules add (the progress API, the status page) through `AppContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ingest.config import Config

CTX: web.AppKey[AppContext] = web.AppKey("ctx")


@dataclass
class AppContext:
    cfg: Config
    registry: CollectorRegistry
    pool: Any = None  # asyncpg pool for read queries
    rollup: Any = None  # ingest.indicators.Rollup: the plan's figures for the progress API
    health: Callable[[], dict[str, Any]] = field(default=lambda: {"status": "ok"})


async def metrics_handler(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = generate_latest(ctx.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health_handler(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    state = ctx.health()
    return web.json_response(state, status=200 if state.get("status") == "ok" else 503)


def make_app(ctx: AppContext) -> web.Application:
    app = web.Application()
    app[CTX] = ctx
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    from ingest.api import add_routes  # the API imports CTX from here

    add_routes(app)
    from ingest.status_page import status_page  # imports CTX from here, like the API

    app.router.add_get("/", status_page)
    return app
