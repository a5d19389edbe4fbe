"""Progress API: the plan's indicators per region, one indicator, its history, regions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from aiohttp import web

from ingest import report
from ingest.api.common import (
    bad,
    error,
    etag_response,
    json_response,
    region_param,
    require,
    step_param,
    time_param,
)
from ingest.appctx import CTX, AppContext
from ingest.indicators import store
from ingest.indicators.catalogue import Indicator
from ingest.indicators.regions import PROVINCE, UNKNOWN, regions
from ingest.indicators.runner import Rollup


def _rollup(ctx: AppContext) -> Rollup:
    if ctx.rollup is None or ctx.pool is None:
        raise error(503, "unavailable", "the indicator rollup is not running in this process")
    return ctx.rollup


async def list_indicators(request: web.Request) -> web.Response:
    """One region's indicators, or with `region=all` every region's in one response."""
    require(request, "read")
    ctx = request.app[CTX]
    everywhere = request.query.get("region") == "all"
    region = PROVINCE if everywhere else region_param(request)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        bad("format", "expected json or csv")
    r = _rollup(ctx)
    res = await r.current(ctx.pool)
    keys = report.region_keys() if everywhere else [region]
    reports = [report.report(r.catalogue, res, key) for key in keys]
    if fmt == "csv":
        return etag_response(request, report.to_csv(reports, report.years(r.catalogue)), "text/csv")
    if everywhere:
        body = {"as_of": report.iso(res.as_of), "region": "all", "plan": r.catalogue.plan,
                "regions": [{"region": rep.region, "indicators": rep.items} for rep in reports]}  # fmt: skip
    else:
        body = reports[0].as_json()
    return etag_response(request, orjson.dumps(body), "application/json")


def _indicator(r: Rollup, key: str) -> Indicator:
    ind = r.catalogue.get(key)
    if ind is None:
        raise error(404, "not_found", f"no indicator {key!r}: see GET /api/v1/indicators")
    return ind


async def get_indicator(request: web.Request) -> web.Response:
    require(request, "read")
    ctx = request.app[CTX]
    region = region_param(request)
    r = _rollup(ctx)
    ind = _indicator(r, request.match_info["key"])
    res = await r.current(ctx.pool)
    body = {"as_of": report.iso(res.as_of), "region": region, **report.one(r.catalogue, res, ind, region)}
    return etag_response(request, orjson.dumps(body), "application/json")


async def indicator_history(request: web.Request) -> web.Response:
    require(request, "read")
    ctx = request.app[CTX]
    region = region_param(request)
    r = _rollup(ctx)
    ind = _indicator(r, request.match_info["key"])
    now = datetime.now(UTC)
    end = time_param(request, "to", now)
    start = time_param(request, "from", end - timedelta(days=30))
    if start > end:
        bad("from", "must not be after `to`")
    step = step_param(request, timedelta(days=1))
    if (end - start) / step > 10000:
        bad("step", "more than 10000 points between from and to: use a larger step")
    async with ctx.pool.acquire() as conn:
        rows = await store.history(conn, ind.key, region, start, end, step)
    points = [{"ts": report.iso(row["ts"]), "value": row["value"], "interim": row["interim"]} for row in rows]
    body = {
        "key": ind.key,
        "region": region,
        "from": report.iso(start),
        "to": report.iso(end),
        "step_s": int(step.total_seconds()),
        "points": points,
    }
    return etag_response(request, orjson.dumps(body), "application/json")


async def list_regions(request: web.Request) -> web.Response:
    require(request, "read")
    out = [
        {"key": reg.key, "name_zh": reg.name_zh, "name_en": reg.name_en, "level": reg.level}
        for reg in regions()
    ]
    unknown = {"key": UNKNOWN, "name_zh": "未知地区", "name_en": "Devices without a known region"}
    out.append({**unknown, "level": "unknown"})
    return json_response({"regions": out})


async def run_rollup(request: web.Request) -> web.Response:
    require(request, "admin")
    ctx = request.app[CTX]
    res = await _rollup(ctx).run_once(ctx.pool)
    return json_response({"as_of": report.iso(res.as_of), "duration_s": res.duration_s})
