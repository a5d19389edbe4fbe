"""Dead-letter endpoints: list and filter (read), one letter (read; its raw bytes
need the admin role), and replay through today's adapters (admin, audited)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters import CLASSES
from ingest import audit, deadletters
from ingest.api.common import actor, bad, error, int_param, json_response, require, role_of, time_param
from ingest.appctx import CTX
from ingest.dispatch import Dispatcher

_CLASSES = tuple(c.name for c in CLASSES)


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z") if ts else None


def letter(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "received_at": _iso(row["received_at"]),
        "topic": row["topic"],
        "class": row["device_class"] or None,
        "device_id": row["device_id"] or None,
        "reason": row["reason"],
        "detail": row["detail"],
        "size": row["size"],
        "replayed_at": _iso(row["replayed_at"]),
    }


def _text(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw or "\x00" in raw or len(raw) > 256:
        bad(name, "expected 1 to 256 characters")
    return raw


def filter_of(request: web.Request) -> deadletters.Filter:
    """The filter of the query string (reason, class, device_id, topic_prefix, from, to, replayed)."""
    q = request.query
    reason = _text(request, "reason")
    if reason is not None and reason not in deadletters.ALL_REASONS:
        bad("reason", f"expected one of {', '.join(deadletters.ALL_REASONS)}")
    cls = _text(request, "class")
    if cls is not None and cls not in _CLASSES:
        bad("class", f"expected one of {', '.join(_CLASSES)}")
    replayed: bool | None = None
    if "replayed" in q:
        if q["replayed"] not in ("true", "false"):
            bad("replayed", "expected true or false")
        replayed = q["replayed"] == "true"
    since = time_param(request, "from", datetime.min.replace(tzinfo=UTC)) if "from" in q else None
    until = time_param(request, "to", datetime.max.replace(tzinfo=UTC)) if "to" in q else None
    if since is not None and until is not None and since > until:
        bad("from", "must not be after `to`")
    return deadletters.Filter(
        reason=reason,
        device_class=cls,
        device_id=_text(request, "device_id"),
        topic_prefix=_text(request, "topic_prefix"),
        since=since,
        until=until,
        replayed=replayed,
    )


async def list_dead_letters(request: web.Request) -> web.Response:
    require(request, "read")
    f = filter_of(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    before = None
    if "cursor" in request.query:
        raw = request.query["cursor"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            bad("cursor", "not a cursor returned by this API")
        before = int(raw)
    async with request.app[CTX].pool.acquire() as conn:
        rows, nxt = await deadletters.page(conn, f, limit, before)
    nxt_text = None if nxt is None else str(nxt)
    return json_response({"dead_letters": [letter(r) for r in rows], "next_cursor": nxt_text})


async def get_dead_letter(request: web.Request) -> web.Response:
    require(request, "read")
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise error(404, "not_found", f"no dead letter {raw!r}")
    async with request.app[CTX].pool.acquire() as conn:
        row = await deadletters.get(conn, int(raw))
    if row is None:
        raise error(404, "not_found", f"no dead letter {raw!r}")
    out = letter(row)
    # The raw bytes may carry what a device should not have sent (credentials, personal
    # data in a free-text field): they need the admin role, the rest does not.
    if role_of(request) == "admin":
        payload = bytes(row["payload"])
        out["payload_base64"] = base64.b64encode(payload).decode()
        out["payload_text"] = deadletters.text_of(payload)
    return json_response(out)


async def replay_dead_letters(request: web.Request) -> web.Response:
    """POST with the filter in the query string (as for the list); `limit` caps how many."""
    require(request, "admin")
    ctx = request.app[CTX]
    f = filter_of(request)
    limit = int_param(request, "limit", 10_000, 1, 1_000_000)
    async with ctx.pool.acquire() as conn:
        result = await deadletters.replay(conn, Dispatcher.for_config(ctx.cfg), f, limit)
        await audit.record(conn, actor(request), "replay", "dead_letters",
                           {"filter": f.as_dict(), **result.as_dict()})  # fmt: skip
    return json_response(result.as_dict())
