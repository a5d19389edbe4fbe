"""Edge endpoints' provisioning and state: OCPP charge point keys and idTags (admin),
and which devices hold a connection to the OCPP or SL651 endpoint now (read)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web

from ingest import audit
from ingest.api.common import actor, bad, error, json_response, require
from ingest.appctx import CTX
from ingest.sources.connections import STALE_AFTER_S
from ingest.sources.ocpp_store import new_key

_CP_ID = re.compile(r"[A-Za-z0-9._:\-]{1,48}")
_TAG_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")


def _cp_id(request: web.Request) -> str:
    cp_id = request.match_info["device_id"]
    if not _CP_ID.fullmatch(cp_id):
        bad("device_id", "a charge point id is 1-48 of A-Z a-z 0-9 . _ : -")
    return cp_id


async def create_key(request: web.Request) -> web.Response:
    """A new key for a charge point (shown once; the previous key stops working)."""
    require(request, "admin")
    cp_id = _cp_id(request)
    async with request.app[CTX].pool.acquire() as conn, conn.transaction():
        key = await new_key(conn, cp_id)
        await audit.record(conn, actor(request), "ocpp_key_issued", cp_id, {})
    return json_response({"device_id": cp_id, "key": key}, status=201)


async def delete_key(request: web.Request) -> web.Response:
    require(request, "admin")
    cp_id = _cp_id(request)
    async with request.app[CTX].pool.acquire() as conn, conn.transaction():
        done = await conn.execute("DELETE FROM ocpp_keys WHERE device_id = $1", cp_id)
        if done == "DELETE 0":
            raise error(404, "not_found", f"charge point {cp_id} has no key")
        await audit.record(conn, actor(request), "ocpp_key_revoked", cp_id, {})
    return web.Response(status=204)


async def put_id_tag(request: web.Request) -> web.Response:
    require(request, "admin")
    tag = request.match_info["id_tag"]
    if not 1 <= len(tag) <= 20:
        bad("id_tag", "an OCPP 1.6 idTag is 1 to 20 characters")
    try:
        body: Any = await request.json() if request.can_read_body else {}
    except ValueError:
        bad("body", "expected a JSON object")
    if not isinstance(body, dict) or set(body) - {"status", "expiry_date", "parent_id_tag"}:
        bad("body", "expected an object with status, expiry_date, parent_id_tag (all optional)")
    status = body.get("status", "Accepted")
    if status not in _TAG_STATUSES:
        bad("status", f"one of {', '.join(_TAG_STATUSES)}")
    expiry: datetime | None = None
    if body.get("expiry_date") is not None:
        try:
            expiry = datetime.fromisoformat(str(body["expiry_date"]))
        except ValueError:
            bad("expiry_date", "an ISO 8601 time with a zone")
        if expiry.tzinfo is None:
            bad("expiry_date", "the time has no zone")
    parent = body.get("parent_id_tag")
    if parent is not None and not (isinstance(parent, str) and 1 <= len(parent) <= 20):
        bad("parent_id_tag", "an idTag of 1 to 20 characters")
    out = {"id_tag": tag, "status": status, "expiry_date": expiry.isoformat() if expiry else None}
    out["parent_id_tag"] = parent
    async with request.app[CTX].pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO ocpp_id_tags (id_tag, status, expiry_date, parent_id_tag) VALUES ($1, $2, $3, $4)
               ON CONFLICT (id_tag) DO UPDATE SET status = EXCLUDED.status,
                   expiry_date = EXCLUDED.expiry_date, parent_id_tag = EXCLUDED.parent_id_tag""",
            tag,
            status,
            expiry,
            parent,
        )
        await audit.record(conn, actor(request), "id_tag_set", tag, out)
    return json_response(out)


async def delete_id_tag(request: web.Request) -> web.Response:
    require(request, "admin")
    tag = request.match_info["id_tag"]
    async with request.app[CTX].pool.acquire() as conn, conn.transaction():
        done = await conn.execute("DELETE FROM ocpp_id_tags WHERE id_tag = $1", tag)
        if done == "DELETE 0":
            raise error(404, "not_found", f"no idTag {tag!r:.40}")
        await audit.record(conn, actor(request), "id_tag_removed", tag, {})
    return web.Response(status=204)


async def list_connections(request: web.Request) -> web.Response:
    require(request, "read")
    transport = request.query.get("transport")
    if transport is not None and transport not in ("ocpp", "sl651"):
        bad("transport", "ocpp or sl651")
    rows = await request.app[CTX].pool.fetch(
        """SELECT c.device_id, c.transport, c.worker, c.remote, c.connected_since,
                  w.seen_at AS worker_seen_at,
                  w.seen_at IS NULL OR w.seen_at < now() - make_interval(secs => $2) AS stale
           FROM device_connections c LEFT JOIN edge_workers w USING (worker, transport)
           WHERE $1::text IS NULL OR c.transport = $1 ORDER BY c.device_id""",
        transport,
        STALE_AFTER_S,
    )
    items = [
        {
            **dict(r),
            "connected_since": r["connected_since"].isoformat(),
            "worker_seen_at": r["worker_seen_at"] and r["worker_seen_at"].isoformat(),
        }
        for r in rows
    ]
    return json_response({"items": items, "count": len(items)})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/devices/{device_id}/ocpp-key", create_key)
    r.add_delete("/api/v1/devices/{device_id}/ocpp-key", delete_key)
    r.add_put("/api/v1/ocpp/id-tags/{id_tag}", put_id_tag)
    r.add_delete("/api/v1/ocpp/id-tags/{id_tag}", delete_id_tag)
    r.add_get("/api/v1/connections", list_connections)
