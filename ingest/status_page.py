"""The status page at `/`: the plan's indicators with progress bars against their
targets, per region, the service's health and the messages it refused, as one
server-rendered HTML page with no scripts and no external assets (it reloads itself
every 30 s), for operators without Grafana at hand.

It shows the figures of the progress API (the same report, ingest.report). Besides
aggregates it names the devices of the latest few refusals (id, reason, detail) —
never payloads, which need the API's admin role (docs/operations.md).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from aiohttp import web

from adapters import CLASSES as DEVICE_CLASSES
from ingest import deadletters, report
from ingest.appctx import CTX
from ingest.indicators.regions import PROVINCE, regions

CLASSES = tuple(c.name for c in DEVICE_CLASSES)
REFRESH_S = 30  # the page reloads itself: an operator leaves it open
STATUS_TEXT = {
    "met": "met",
    "on_track": "on track",
    "behind": "behind",
    "no_data": "no data",
    "no_target": "no target",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
 margin:0;color:#1d2733;background:#f4f6f8}
header{background:#12324f;color:#fff;padding:14px 24px}
header h1{font-size:20px;margin:0 0 2px}
header p{margin:0;opacity:.85}
main{padding:16px 24px;max-width:1400px}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;margin:0 0 16px;padding:12px 16px}
h2{font-size:16px;margin:0 0 10px}
nav a{display:inline-block;margin:0 6px 6px 0;padding:3px 9px;border:1px solid #c3ccd5;border-radius:12px;
 color:#12324f;text-decoration:none;font-size:13px}
nav a.on{background:#12324f;color:#fff;border-color:#12324f}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e6eaee;vertical-align:middle}
th{font-size:12px;color:#5a6772;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.zh{display:block;font-weight:600}.en{display:block;font-size:12px;color:#5a6772}
.bar{position:relative;height:18px;background:#e6eaee;border-radius:3px;min-width:160px;overflow:hidden}
.fill{height:100%;background:#2f7ed8}
.fill.met{background:#2e9e4f}.fill.behind{background:#d9534f}.fill.on_track{background:#2f7ed8}
.bar span{position:absolute;left:6px;top:0;font-size:12px;line-height:18px;color:#10202e}
.tgt{font-size:12px;color:#5a6772}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.badge.ok,.badge.met{background:#2e9e4f}.badge.degraded,.badge.behind{background:#d9534f}
.badge.on_track{background:#2f7ed8}.badge.no_data,.badge.no_target{background:#8a96a0}
.interim{font-size:11px;color:#a36a00;margin-left:4px}
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:6px 16px;margin:0}
dt{font-size:12px;color:#5a6772}dd{margin:0;font-weight:600}
td.cell{font-size:12px;white-space:nowrap}
#all-regions td:first-child{white-space:nowrap}
#all-regions{overflow-x:auto}
#all-regions table{table-layout:fixed}#all-regions th{white-space:normal;overflow-wrap:anywhere}
#all-regions td.cell{white-space:normal}
td.detail{font-size:12px;color:#5a6772;overflow-wrap:anywhere}
h3{font-size:14px;margin:12px 0 6px}
"""


def fmt(value: float | None, unit: str) -> str:
    """A figure for people: counts with thousands separators, ratios to 3 decimals."""
    if value is None or math.isnan(value):
        return "—"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "%":
        return f"{value:.1f} %"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _bar(progress: float | None, target: float | None, unit: str, status: str, year: str, last: bool) -> str:
    """A progress bar towards one year's target. The last target's bar takes the
    indicator's status colour (a PUE of exactly 1.2 has progress 100 % but does not
    meet "< 1.2"); earlier targets are met at 100 %."""
    if target is None:
        return '<span class="tgt">no target</span>'
    tgt = f'<span class="tgt">{escape(year)} target {escape(fmt(target, unit))}</span>'
    if progress is None:
        return f'<div class="bar" data-progress=""><span>no data</span></div>{tgt}'
    pct = math.floor(1000.0 * progress) / 10  # never shows 100.0 % before it is reached
    width = max(0.0, min(100.0, pct))
    cls = status if last else ("met" if progress >= 1 else status)
    return (
        f'<div class="bar" data-progress="{progress:.6f}">'
        f'<div class="fill {escape(cls)}" style="width:{width:.1f}%"></div>'
        f"<span>{pct:.1f} %</span></div>{tgt}"
    )


def _health(health: dict[str, Any], rollup_at: datetime | None) -> str:
    """The worker's own health (what /healthz says) and when the rollup last succeeded."""
    status = str(health.get("status", "unknown"))
    rows = [("status", f'<span class="badge {escape(status)}">{escape(status)}</span>')]
    for key, value in health.items():
        if key != "status":
            rows.append((key.replace("_", " "), escape(_word(value))))
    if rollup_at is not None:
        rows.append(("last rollup", escape(rollup_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))))
    body = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in rows)
    return f'<section id="health"><h2>Service health</h2><dl>{body}</dl></section>'


def _word(value: Any) -> str:
    """Booleans as words for people, the rest as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    return str(value)


def _rejections(by_reason: dict[str, int], latest: list[Any]) -> str:
    """Dead letters of the last hour by reason (a rate per minute), the latest few
    with device and reason, and where to read the rest."""
    total = sum(by_reason.values())
    rates = "".join(
        f'<tr data-reason="{escape(r)}"><td>{escape(r)}</td><td class="num">{n:,}</td>'
        f'<td class="num">{n / 60:.2f}</td></tr>'
        for r, n in sorted(by_reason.items(), key=lambda kv: -kv[1])
    ) or '<tr><td colspan="3">none in the last hour</td></tr>'
    recent = "".join(
        f'<tr data-dead-letter="{row["id"]}">'
        f'<td>{escape(row["received_at"].astimezone(UTC).strftime("%H:%M:%S"))}</td>'
        f"<td>{escape(row['device_id'] or '—')}</td><td>{escape(row['reason'])}</td>"
        f'<td class="detail">{escape(row["detail"][:160])}</td></tr>'
        for row in latest
    ) or '<tr><td colspan="4">none</td></tr>'
    return (
        f'<section id="rejections"><h2>Rejected messages: {total:,} in the last hour</h2>'
        "<table><thead><tr><th>reason</th><th>last hour</th><th>per minute</th></tr></thead>"
        f"<tbody>{rates}</tbody></table>"
        "<h3>Latest</h3><table><thead><tr><th>received (UTC)</th><th>device</th><th>reason</th>"
        f"<th>detail</th></tr></thead><tbody>{recent}</tbody></table>"
        '<p class="tgt">All of them, with their raw bytes: '
        '<a href="/api/v1/dead-letters">/api/v1/dead-letters</a> '
        "(docs/api.md), or <code>ingest dead-letters list</code>.</p></section>"
    )


async def status_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    known = regions()
    names = {r.key: r for r in known}
    region = request.query.get("region", PROVINCE)
    if region not in names:
        raise web.HTTPBadRequest(text=f"unknown region {region!r}; known: {', '.join(names)}")
    rollup = ctx.rollup
    if rollup is None or ctx.pool is None:
        raise web.HTTPServiceUnavailable(text="the indicator rollup is not running in this process")
    res = await rollup.current(ctx.pool)
    ys = [str(y) for y in report.years(rollup.catalogue)]
    items = report.report(rollup.catalogue, res, region).items
    now = datetime.now(UTC)
    async with ctx.pool.acquire() as conn:
        by_reason = await deadletters.counts(conn, now - timedelta(hours=1))
        latest_refusals, _ = await deadletters.page(conn, deadletters.Filter(), 5)
    here = names[region]
    nav = "".join(
        f'<a href="/?region={escape(r.key)}"{" class=on" if r.key == region else ""}>'
        f"{escape(r.name_zh)} {escape(r.name_en)}</a>"
        for r in known
    )
    head = "".join(f"<th>{escape(y)}</th>" for y in ys)
    rows = []
    for it in items:
        due = max((y for y in ys if it["targets"][y] is not None), default="")
        interim = '<span class="interim">interim</span>' if it["interim"] else ""
        bars = "".join(
            f"<td>{_bar(it['progress'][y], it['targets'][y], it['unit'], it['status'], y, y == due)}</td>"
            for y in ys
        )
        value = "" if it["value"] is None else repr(float(it["value"]))
        rows.append(
            f'<tr data-indicator="{escape(it["key"])}">'
            f'<td><span class="zh">{escape(it["name_zh"])}</span>'
            f'<span class="en">{escape(it["name_en"])}</span></td>'
            f'<td class="num" data-value="{value}">{escape(fmt(it["value"], it["unit"]))}{interim}</td>'
            f"<td>{escape(it['unit'])}</td>{bars}"
            f'<td><span class="badge {escape(it["status"])}">'
            f"{escape(STATUS_TEXT.get(it['status'], it['status']))}</span></td></tr>"
        )
    fleet = "".join(
        f'<tr data-class="{c}"><td>{c}</td>'
        f'<td class="num">{res.fleet.get((c, region), (0, 0))[0]:,}</td>'
        f'<td class="num">{res.fleet.get((c, region), (0, 0))[1]:,}</td></tr>'
        for c in CLASSES
    )
    last = ys[-1] if ys else ""
    # Headers that wrap (words, not one long key) keep the table within 1,280 px.
    matrix_head = "".join(f"<th title=\"{escape(it['key'])}\">{escape(it['name_en'])}</th>" for it in items)
    matrix = []
    for r in known:
        cells = []
        for one in report.report(rollup.catalogue, res, r.key).items:
            p = one["progress"].get(last)
            extra = f" ({100 * p:.0f} %)" if p is not None else ""
            cells.append(f'<td class="cell">{escape(fmt(one["value"], one["unit"]))}{extra}</td>')
        matrix.append(
            f'<tr><td><a href="/?region={escape(r.key)}">{escape(r.name_zh)}</a></td>{"".join(cells)}</tr>'
        )
    as_of = res.as_of.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    last_rollup = datetime.fromtimestamp(rollup.last_success, UTC) if rollup.last_success else None
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>新型基础设施 · plan progress · {escape(here.name_en)}</title>
<style>{CSS}</style></head>
<body><header><h1>{escape(rollup.catalogue.title_zh)}</h1>
<p>{escape(rollup.catalogue.title_en)} · {escape(rollup.catalogue.plan)} · as of {escape(as_of)}</p></header>
<main>
{_health(ctx.health(), last_rollup)}
{_rejections(by_reason, latest_refusals)}
<section id="regions"><h2>Region</h2><nav>{nav}</nav></section>
<section id="indicators" data-region="{escape(region)}">
<h2>{escape(here.name_zh)} {escape(here.name_en)}: indicators against the plan's targets</h2>
<table><thead><tr><th>indicator</th><th>value</th><th>unit</th>{head}<th>status</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></section>
<section id="fleet"><h2>Devices, {escape(here.name_en)}</h2>
<table><thead><tr><th>class</th><th>built (reported at least once)</th><th>online</th></tr></thead>
<tbody>{fleet}</tbody></table></section>
<section id="all-regions"><h2>All regions: value (progress towards {escape(last)})</h2>
<table><thead><tr><th>region</th>{matrix_head}</tr></thead><tbody>{"".join(matrix)}</tbody></table>
</section>
</main></body></html>
"""
    return web.Response(text=page, content_type="text/html", charset="utf-8")
