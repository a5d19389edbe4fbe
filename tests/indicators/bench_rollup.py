"""Rollup benchmark (not a test): 45k devices, a year of 15-minute data-centre
registers, a day of hourly reservoir reports; times the rollup and the API.

    python -m tests.indicators.bench_rollup
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from ingest import config
from ingest.appctx import AppContext
from ingest.http import make_app
from ingest.indicators import Rollup, load_catalogue
from ingest.migrate import migrate
from tests.services import create_database, drop_database

COUNTS = {"reservoir": 20000, "power_line": 3000, "charger": 22000}
DATACENTERS = 48
PREFECTURES = ["520100", "520200", "520300", "520400", "520500", "520600", "522300", "522600", "522700"]


async def fill(conn: asyncpg.Connection, now: datetime) -> int:
    rnd = random.Random(1)
    devices = []
    for cls, n in COUNTS.items():
        for i in range(n):
            seen = now - timedelta(seconds=rnd.uniform(0, 7200))
            region = rnd.choice(PREFECTURES) if rnd.random() > 0.01 else None
            devices.append((f"{cls}-{i}", cls, now - timedelta(days=30), seen, region, True, now))
    for i in range(DATACENTERS):
        devices.append((f"dc-{i}", "datacenter", now - timedelta(days=400), now, "guian", True, now))
    await conn.copy_records_to_table(
        "devices",
        records=devices,
        columns=["device_id", "class", "first_seen", "last_seen", "region", "provisioned", "automated_at"],
    )
    await conn.execute(
        "UPDATE devices SET attributes = jsonb_build_object('pue_category', 1 + (hashtext(device_id) & 1)) "
        "WHERE class = 'datacenter'"
    )
    rows = []
    for i in range(COUNTS["reservoir"]):
        for h in range(24):
            rows.append((f"reservoir-{i}", now - timedelta(hours=h), "", 1000.0 + h, 0.1))
    await conn.copy_records_to_table(
        "readings_reservoir", records=rows, columns=["device_id", "ts", "point", "level_m", "rain_1h_mm"]
    )
    n = len(rows)
    steps = 365 * 96
    for d in range(DATACENTERS):
        f, it, rows = 1e6, 8e5, []
        for k in range(steps):
            it_step = rnd.uniform(200, 300)
            f, it = f + it_step * rnd.uniform(1.1, 1.4), it + it_step
            if k == steps // 2 and d % 7 == 0:
                f, it = 0.0, 0.0  # a meter swap
            extra = (2000.0, 1400.0) if k == steps - 1 else (None, None)
            rows.append((f"dc-{d}", now - timedelta(minutes=15 * (steps - k)), "", f, it, *extra))
        await conn.copy_records_to_table(
            "readings_datacenter",
            records=rows,
            columns=["device_id", "ts", "point", "facility_energy_kwh", "it_energy_kwh", "racks_built",
                     "racks_in_service"],
        )  # fmt: skip
        n += len(rows)
    await conn.execute("ANALYZE")
    return n


async def main() -> None:
    url = await create_database()
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn, use_timescale=False)
        now = datetime.now(UTC)
        t = time.perf_counter()
        n = await fill(conn, now)
        print(f"filled 45,048 devices and {n:,} readings in {time.perf_counter() - t:.1f}s")
        await conn.close()
        cfg = config.load(env={"INGEST_DATABASE_URL": url})
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        rollup = Rollup(cfg.rollup, load_catalogue())
        for _ in range(3):
            res = await rollup.run_once(pool)
            print(f"rollup (compute + store): {res.duration_s:.2f}s compute")
        fig = res.figures[("dc_average_pue", "guian")]
        print(f"PUE guian: {fig.value:.4f} interim={fig.interim} inputs={dict(fig.inputs)}")
        app = make_app(AppContext(cfg, CollectorRegistry(), pool=pool, rollup=rollup))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        lat = []
        async with aiohttp.ClientSession() as http:
            for i in range(200):
                region = (["520000", *PREFECTURES])[i % 10]
                t = time.perf_counter()
                async with http.get(f"http://127.0.0.1:{port}/api/v1/indicators?region={region}") as r:
                    await r.read()
                lat.append(time.perf_counter() - t)
        lat.sort()
        print(f"GET /api/v1/indicators: median {statistics.median(lat) * 1000:.2f} ms, "
              f"p99 {lat[int(len(lat) * 0.99)] * 1000:.2f} ms over {len(lat)} requests")  # fmt: skip
        await runner.cleanup()
        await pool.close()
    finally:
        await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
