"""The SQL form of the register rule (store.STEPS) agrees with energy.register_energy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ingest.indicators import store
from ingest.indicators.energy import Segment, register_energy
from ingest.migrate import migrate


async def test_sql_steps_match_the_python_rule(db_url: str) -> None:
    rnd = random.Random(7)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    series: dict[str, list[tuple[datetime, float, float]]] = {}
    for d in range(12):
        f, it, pts = rnd.uniform(0, 1e5), 0.0, []
        for k in range(rnd.randint(1, 200)):
            step = rnd.uniform(0, 50)
            f, it = f + step * rnd.uniform(1.0, 1.5), it + step
            roll = rnd.random()
            if roll < 0.03:
                f, it = rnd.uniform(0, 10), rnd.uniform(0, 5)  # reset
            elif roll < 0.05:
                it += 100  # IT outgrows facility
            pts.append((t0 + timedelta(minutes=15 * k + rnd.randint(0, 5)), f, it))
        series[f"dc-{d}"] = pts
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        await conn.copy_records_to_table(
            "readings_datacenter",
            records=[(dev, ts, "", f, it) for dev, pts in series.items() for ts, f, it in pts],
            columns=["device_id", "ts", "point", "facility_energy_kwh", "it_energy_kwh"],
        )
        got = await store.energies(conn, t0 - timedelta(days=1), t0 + timedelta(days=30), timescale=False)
    finally:
        await conn.close()
    assert set(got) == set(series)
    for dev, pts in series.items():
        want = register_energy([Segment.sample(*p) for p in pts])
        e = got[dev]
        assert e.facility_kwh == pytest.approx(want.facility_kwh, rel=1e-9, abs=1e-6), dev
        assert e.it_kwh == pytest.approx(want.it_kwh, rel=1e-9, abs=1e-6), dev
        assert (e.covered_s, e.resets, e.rejected, e.first, e.last) == (
            want.covered_s, want.resets, want.rejected, want.first, want.last)  # fmt: skip
