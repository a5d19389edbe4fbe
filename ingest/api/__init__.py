"""The progress API (`/api/v1/...`): plan indicators, regions, devices, provisioning,
dead letters and their replay, the edge endpoints' keys and connections, and its
OpenAPI document. Routes are added by `add_routes`, called from make_app."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from ingest.api import audit, deadletters, devices, edge, indicators
from ingest.api.common import error

OPENAPI = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"

__all__ = ["OPENAPI", "add_routes"]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors under /api/ are JSON, including aiohttp's own 404 and 405."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json" or exc.status < 400:
            raise
        if isinstance(exc, web.HTTPMethodNotAllowed):
            body = (error(400, "method_not_allowed", exc.reason).text or "").replace("400", "405", 1)
            raise web.HTTPMethodNotAllowed(
                exc.method, exc.allowed_methods, text=body, content_type="application/json"
            ) from None
        status = exc.status if exc.status in (404, 413) else 400
        raise error(status, _CODES.get(exc.status, "bad_request"), exc.reason) from None


_CODES = {404: "not_found", 413: "too_large"}


async def openapi(request: web.Request) -> web.Response:
    if not OPENAPI.is_file():
        raise error(404, "not_found", "the OpenAPI document is not installed beside the package")
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.middlewares.append(json_errors)
    r = app.router
    r.add_get("/api/v1/openapi.json", openapi)
    r.add_get("/api/v1/indicators", indicators.list_indicators)
    r.add_get("/api/v1/indicators/{key}", indicators.get_indicator)
    r.add_get("/api/v1/indicators/{key}/history", indicators.indicator_history)
    r.add_get("/api/v1/regions", indicators.list_regions)
    r.add_post("/api/v1/rollup", indicators.run_rollup)
    r.add_get("/api/v1/devices", devices.list_devices)
    r.add_post("/api/v1/devices", devices.post_devices)
    r.add_get("/api/v1/devices/{device_id}", devices.get_device)
    r.add_put("/api/v1/devices/{device_id}", devices.put_device)
    r.add_delete("/api/v1/devices/{device_id}", devices.delete_device)
    r.add_get("/api/v1/devices/{device_id}/readings", devices.device_readings)
    r.add_get("/api/v1/dead-letters", deadletters.list_dead_letters)
    r.add_post("/api/v1/dead-letters/replay", deadletters.replay_dead_letters)
    r.add_get("/api/v1/dead-letters/{id}", deadletters.get_dead_letter)
    r.add_get("/api/v1/audit", audit.list_audit)
    edge.add_routes(app)
