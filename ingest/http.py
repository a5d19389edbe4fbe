"""The HTTP surface: `/metrics` (Prometheus), `/healthz`, the progress API and the
status page, on one aiohttp application built by `make_app`."""

from __future__ import annotations

import logging

from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from ingest.api import add_routes
from ingest.appctx import CTX, AppContext
from ingest.status_page import status_page

__all__ = ["make_app"]

# No software version in the `Server` header. aiohttp writes its default into every
# response it makes itself (the 400 of a malformed request included), where no
# response signal can reach, so the default is replaced where aiohttp keeps it.
setattr(web_response, "SERVER_SOFTWARE", "ingest")  # noqa: B010 - module constant


class MalformedRequests(logging.Filter):
    """aiohttp logs a malformed request (bad request line, header or URL) as a
    traceback; make it one warning line, and count it."""

    def __init__(self, counter: Counter, floor: int) -> None:
        super().__init__()
        self.counter = counter
        self.floor = floor  # the level the logger had: other records below it stay out

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return record.levelno >= self.floor
        self.counter.inc()
        first = (str(exc.message).strip().splitlines() or [""])[0]
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "malformed HTTP request from %s: %s", (remote, first)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


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
    counter = Counter("ingest_http_malformed_requests_total",
                      "HTTP requests refused as malformed before routing", registry=ctx.registry)  # fmt: skip
    server_log = logging.getLogger("aiohttp.server")
    # aiohttp logs a client's first bad method at DEBUG: the filter must see it to count it
    malformed = MalformedRequests(counter, server_log.getEffectiveLevel())
    server_log.addFilter(malformed)
    if server_log.level == logging.NOTSET or server_log.level > logging.DEBUG:
        server_log.setLevel(logging.DEBUG)

    async def remove_filter(_: web.Application) -> None:
        server_log.removeFilter(malformed)

    app.on_cleanup.append(remove_filter)
    return app
