"""The HTTP surface: `/metrics` (Prometheus), `/healthz`, the progress API and the
status page, on one aiohttp application built by `make_app`."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.api import add_routes
from ingest.appctx import CTX, AppContext
from ingest.status_page import status_page

__all__ = ["make_app"]


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
    add_routes(app)
    app.router.add_get("/", status_page)
    return app
