"""Progress API: the plan's indicators per region, one indicator, its history, regions."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

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
from ingest.http import CTX, AppContext
from ingest.indicators import store
from ingest.indicators.catalogue import Indicator
from ingest.indicators.compute import Figure, RollupResult
from ingest.indicators.progress import progress, status
from ingest.indicators.regions import PROVINCE, UNKNOWN, regions
from ingest.indicators.runner import Rollup


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _rollup(ctx: AppContext) -> Rollup:
    if ctx.rollup is None or ctx.pool is None:
        raise error(503, "unavailable", "the indicator rollup is not running in this process")
    r: Rollup = ctx.rollup
    return r


async def latest(ctx: AppContext) -> RollupResult:
    """The latest rollup, computing one now if none has run yet."""
    r = _rollup(ctx)
    if r.latest is None:
        await r.run_once(ctx.pool)
    assert r.latest is not None
    return r.latest


def years(r: Rollup) -> list[int]:
    return sorted({t.year for i in r.catalogue.indicators for t in i.targets})


def item(ind: Indicator, fig: Figure, region: str, as_of: datetime, all_years: list[int]) -> dict[str, Any]:
    targets = {t.year: t for t in ind.targets_for(region, PROVINCE)}
    return {
        "key": ind.key,
        "name_zh": ind.name_zh,
        "name_en": ind.name_en,
        "unit": ind.unit,
        "device_class": ind.device_class,
        "formula": ind.formula,
        "value": fig.value,
        "interim": fig.interim,
        "targets": {str(y): (targets[y].value if y in targets else None) for y in all_years},
        "stretch": {str(y): targets[y].stretch for y in all_years if y in targets},
        "direction": ind.direction,
        "progress": {
            str(y): (progress(fig.value, targets[y].value, ind.direction) if y in targets else None)
            for y in all_years
        },
        "status": status(fig.value, tuple(targets.values()), ind.direction, as_of),
        "lead": ind.lead,
        "clause": ind.clause,
        "inputs": dict(fig.inputs),
    }


def _csv(items: list[dict[str, Any]], all_years: list[int], region: str, as_of: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["as_of", "region", "key", "name_zh", "name_en", "unit", "value", "interim", "direction"]
    head += [f"target_{y}" for y in all_years] + [f"progress_{y}" for y in all_years] + ["status"]
    w.writerow(head)
    for it in items:
        row = [as_of, region, it["key"], it["name_zh"], it["name_en"], it["unit"], it["value"]]
        row += [str(it["interim"]).lower(), it["direction"]]
        row += [it["targets"][str(y)] for y in all_years] + [it["progress"][str(y)] for y in all_years]
        w.writerow([*("" if v is None else v for v in row), it["status"]])
    return buf.getvalue().encode()


async def list_indicators(request: web.Request) -> web.Response:
    require(request, "read")
    ctx = request.app[CTX]
    region = region_param(request)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        bad("format", "expected json or csv")
    res = await latest(ctx)
    r = _rollup(ctx)
    ys = years(r)
    items = [
        item(ind, res.figures[(ind.key, region)], region, res.as_of, ys) for ind in r.catalogue.indicators
    ]
    if fmt == "csv":
        return etag_response(request, _csv(items, ys, region, _iso(res.as_of)), "text/csv")
    body = {"as_of": _iso(res.as_of), "region": region, "plan": r.catalogue.plan, "indicators": items}
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
    res = await latest(ctx)
    body = {"as_of": _iso(res.as_of), "region": region, **item(ind, res.figures[(ind.key, region)],
                                                                 region, res.as_of, years(r))}  # fmt: skip
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
    points = [{"ts": _iso(row["ts"]), "value": row["value"], "interim": row["interim"]} for row in rows]
    body = {
        "key": ind.key,
        "region": region,
        "from": _iso(start),
        "to": _iso(end),
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
    return json_response({"as_of": _iso(res.as_of), "duration_s": res.duration_s})
