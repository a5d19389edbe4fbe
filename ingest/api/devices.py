"""Device endpoints: list and filter, one device, its readings, and provisioning
(admin): PUT one, POST many (JSON list or CSV), DELETE to decommission."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from ingest import deadletters, registry
from ingest.api.common import actor, bad, error, int_param, json_response, require, time_param
from ingest.appctx import CTX
from ingest.indicators import provisioning as prov
from ingest.indicators.regions import UNKNOWN, normalise, region_keys

MAX_BODY = 16 * 1024 * 1024
_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z") if ts else None


def _device(row: Any) -> dict[str, Any]:
    return {
        "device_id": row["device_id"],
        "class": row["class"],
        "region": normalise(row["region"]),
        "region_text": row["region"],
        "site": row["site"],
        "name": row["name"],
        "provisioned": row["provisioned"],
        "attributes": orjson.loads(row["attributes"]),
        "meta": orjson.loads(row["meta"]),
        "first_seen": _iso(row["first_seen"]),
        "last_seen": _iso(row["last_seen"]),
        "status": row["status"],
        "built": row["first_seen"] is not None,
        "online": row["online"],
        "decommissioned_at": _iso(row["decommissioned_at"]),
    }


def _cursor(raw: str) -> str:
    """The position a cursor stands for. Any unpadded base64url text (what the OpenAPI
    document allows) is a position, so only text outside that form is refused."""
    if not raw or not set(raw) <= _B64 or len(raw) % 4 == 1:
        bad("cursor", "not a cursor returned by this API")
    last = base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4))
    return last.decode("utf-8", "replace").replace("\x00", "\ufffd")  # text PostgreSQL can hold


async def list_devices(request: web.Request) -> web.Response:
    require(request, "read")
    ctx = request.app[CTX]
    q = request.query
    if "class" in q and q["class"] not in prov.CLASS_INDEX:
        bad("class", f"expected one of {', '.join(prov.CLASS_INDEX)}")
    region = None
    if "region" in q:
        region = "guian" if q["region"].lower() == "guian" else q["region"]
        if region not in region_keys() and region != UNKNOWN:
            bad("region", f"unknown region {q['region']!r}: see GET /api/v1/regions")
    online = None
    if "online" in q:
        if q["online"] not in ("true", "false"):
            bad("online", "expected true or false")
        online = q["online"] == "true"
    after = _cursor(q["cursor"]) if "cursor" in q else None
    limit = int_param(request, "limit", 100, 1, 1000)
    async with ctx.pool.acquire() as conn:
        rows = await registry.list_devices(conn, ctx.cfg.rollup, datetime.now(UTC), limit + 1,
                                           q.get("class"), region, online, after)  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = base64.urlsafe_b64encode(rows[-1]["device_id"].encode()).decode().rstrip("=") if more else None
    return json_response({"devices": [_device(r) for r in rows], "next_cursor": nxt})


async def _fetch_device(request: web.Request, device_id: str) -> Any:
    ctx = request.app[CTX]
    if "\x00" in device_id:  # PostgreSQL text cannot hold NUL: no such device
        raise error(404, "not_found", "no such device")
    async with ctx.pool.acquire() as conn:
        row = await registry.get_device(conn, ctx.cfg.rollup, device_id, datetime.now(UTC))
    if row is None:
        raise error(404, "not_found", f"no device {device_id!r}")
    return row


async def get_device(request: web.Request) -> web.Response:
    require(request, "read")
    body = _device(await _fetch_device(request, request.match_info["device_id"]))
    async with request.app[CTX].pool.acquire() as conn:
        refusal = await deadletters.latest_for_device(conn, body["device_id"])
    body["last_refusal"] = (
        None
        if refusal is None
        else {
            "id": refusal["id"],
            "received_at": _iso(refusal["received_at"]),
            "reason": refusal["reason"],
            "detail": refusal["detail"],
        }
    )
    return json_response(body)


async def device_readings(request: web.Request) -> web.Response:
    require(request, "read")
    ctx = request.app[CTX]
    row = await _fetch_device(request, request.match_info["device_id"])
    cls = prov.CLASS_INDEX.get(row["class"])
    if cls is None:  # pragma: no cover - classes in the table come from the adapters
        raise error(404, "not_found", "no readings table for this class")
    metrics = list(cls.columns)
    if "metric" in request.query:
        wanted = request.query["metric"].split(",")
        for m in wanted:
            if m not in cls.metric_index:
                bad("metric", f"{m!r} is not a {cls.name} metric (known: {', '.join(cls.columns)})")
        metrics = wanted
    now = datetime.now(UTC)
    end = time_param(request, "to", now)
    start = time_param(request, "from", end - timedelta(days=1))
    if start > end:
        bad("from", "must not be after `to`")
    limit = int_param(request, "limit", 1000, 1, 10000)
    cols = ", ".join(metrics)  # names checked against the class declaration above
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT ts, point, {cols} FROM {cls.table} WHERE device_id = $1 AND ts >= $2 AND ts <= $3 "
            f"ORDER BY ts, point LIMIT {limit}",
            row["device_id"],
            start,
            end,
        )
    units = {m.name: m.unit for m in cls.metrics if m.name in metrics}
    return json_response(
        {
            "device_id": row["device_id"],
            "class": cls.name,
            "from": _iso(start),
            "to": _iso(end),
            "units": units,
            "readings": [
                {"ts": _iso(r["ts"]), "point": r["point"], "values": {m: r[m] for m in metrics}} for r in rows
            ],
        }
    )


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error(400, "bad_body", f"body: not JSON ({exc})", "body") from None


async def _apply(request: web.Request, records: list[prov.Record]) -> list[str]:
    ctx = request.app[CTX]
    async with ctx.pool.acquire() as conn, conn.transaction():
        refused = await registry.provision(conn, records, actor(request))
        if refused:
            raise error(
                409,
                "class_conflict",
                f"already registered under another class: {', '.join(refused[:20])}; "
                "decommission and re-provision under a new id",
            )
    return [r.device_id for r in records]


async def put_device(request: web.Request) -> web.Response:
    require(request, "admin")
    dev = request.match_info["device_id"]
    doc = await _json_body(request)
    if isinstance(doc, dict):
        doc.setdefault("device_id", dev)
        if doc["device_id"] != dev:
            bad("device_id", "differs from the id in the path")
    try:
        record = prov.validate(doc, "body")
    except prov.ProvisioningError as exc:
        raise error(400, "bad_record", str(exc), exc.where) from None
    await _apply(request, [record])
    return json_response(_device(await _fetch_device(request, dev)))


async def post_devices(request: web.Request) -> web.Response:
    require(request, "admin")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise error(413, "too_large", f"body over {MAX_BODY} bytes: split it")
    try:
        if request.content_type == "text/csv":
            records = prov.parse_csv((await request.read()).decode("utf-8-sig"))
        elif request.content_type in ("application/json", ""):
            doc = await _json_body(request)
            if not isinstance(doc, list):
                raise prov.ProvisioningError("body", "expected a JSON list of device records")
            records = [prov.validate(d, f"body[{i}]") for i, d in enumerate(doc)]
        else:
            raise error(415, "unsupported_media_type", "send application/json or text/csv")
        prov.check_unique(records)
    except prov.ProvisioningError as exc:
        raise error(400, "bad_record", str(exc), exc.where) from None
    except UnicodeDecodeError:
        raise error(400, "bad_body", "body: CSV must be UTF-8", "body") from None
    ids = await _apply(request, records)
    return json_response({"provisioned": len(ids)})


async def delete_device(request: web.Request) -> web.Response:
    require(request, "admin")
    ctx = request.app[CTX]
    dev = request.match_info["device_id"]
    await _fetch_device(request, dev)  # 404 when unknown
    async with ctx.pool.acquire() as conn:
        await registry.decommission(conn, dev, actor(request))
    return web.Response(status=204)
