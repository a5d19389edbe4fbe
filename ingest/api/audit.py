"""The audit trail over the API (admin): provisioning, decommissioning and replays,
newest first, with the token's name, the time and what changed."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiohttp import web

from ingest import audit
from ingest.api.common import bad, int_param, json_response, require, time_param
from ingest.appctx import CTX


async def list_audit(request: web.Request) -> web.Response:
    require(request, "admin")
    q = request.query
    action = q.get("action")
    if action is not None and action not in audit.ACTIONS:
        bad("action", f"expected one of {', '.join(audit.ACTIONS)}")
    since = time_param(request, "from", datetime.min.replace(tzinfo=UTC)) if "from" in q else None
    before = None
    if "cursor" in q:
        if not q["cursor"].isascii() or not q["cursor"].isdigit() or len(q["cursor"]) > 18:
            bad("cursor", "not a cursor returned by this API")
        before = int(q["cursor"])
    limit = int_param(request, "limit", 100, 1, 1000)
    async with request.app[CTX].pool.acquire() as conn:
        rows = await audit.page(conn, limit, before, action, since)
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        {
            "id": r["id"],
            "at": r["at"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "actor": r["actor"],
            "action": r["action"],
            "target": r["target"],
            "detail": orjson.loads(r["detail"]),
        }
        for r in rows
    ]
    return json_response({"entries": entries, "next_cursor": str(rows[-1]["id"]) if more else None})
