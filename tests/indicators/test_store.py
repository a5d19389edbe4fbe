"""One rule, one answer: the rollup's sample path and bucket path (through the plain
views that carry the aggregates' names and columns) give energy.meter_energy's
figures, resets, backward steps and window edges included; and a whole rollup —
counts, racks, utilisation, PUE — is the same on both paths and the Python rule's."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ingest.config import RollupConfig
from ingest.indicators import store
from ingest.indicators.catalogue import load_catalogue
from ingest.indicators.compute import Params, rollup
from ingest.indicators.energy import Energy, meter_energy, total
from ingest.migrate import migrate

T0 = datetime(2025, 1, 1, tzinfo=UTC)
Sample = tuple[datetime, float, float]


def random_meters(rnd: random.Random, meters: int, start: datetime) -> dict[str, list[Sample]]:
    """15-minute register series with resets, backward steps and IT outgrowing facility."""
    series: dict[str, list[Sample]] = {}
    for d in range(meters):
        f, it, pts = rnd.uniform(0, 1e5), 0.0, []
        for k in range(rnd.randint(1, 300)):
            step = rnd.uniform(0, 50)
            f, it = f + step * rnd.uniform(1.0, 1.5), it + step
            roll = rnd.random()
            if roll < 0.03:
                f, it = rnd.uniform(0, 10), rnd.uniform(0, 5)  # reset
            elif roll < 0.05:
                it += 100  # IT outgrows facility
            elif roll < 0.07:
                f -= 30  # a backward step of one register
            pts.append((start + timedelta(minutes=15 * k + rnd.randint(0, 5)), f, it))
        series[f"dc-{d}"] = pts
    return series


def rule(series: dict[str, list[Sample]], start: datetime, end: datetime) -> dict[str, Energy]:
    out = {}
    for dev, pts in series.items():
        inside = [p for p in pts if start < p[0] <= end]
        if inside:
            out[dev] = meter_energy(inside)
    return out


def assert_same(got: dict[str, Energy], want: dict[str, Energy]) -> None:
    assert set(got) == set(want)
    for dev, w in want.items():
        e = got[dev]
        assert e.facility_kwh == pytest.approx(w.facility_kwh, rel=1e-9, abs=1e-6), dev
        assert e.it_kwh == pytest.approx(w.it_kwh, rel=1e-9, abs=1e-6), dev
        assert (e.covered_s, e.resets, e.rejected, e.first, e.last) == (
            w.covered_s, w.resets, w.rejected, w.first, w.last), dev  # fmt: skip


async def load(conn: asyncpg.Connection, series: dict[str, list[Sample]]) -> None:
    await conn.copy_records_to_table(
        "readings_datacenter",
        records=[(dev, ts, "", f, it) for dev, pts in series.items() for ts, f, it in pts],
        columns=["device_id", "ts", "point", "facility_energy_kwh", "it_energy_kwh"],
    )


WINDOWS = [
    (T0 - timedelta(days=1), T0 + timedelta(days=30)),  # everything
    (T0 + timedelta(hours=5, minutes=7), T0 + timedelta(days=2, hours=3, minutes=41)),  # partial hours
    (T0 + timedelta(hours=6), T0 + timedelta(hours=30)),  # on the hour: the first bucket is not whole
    (T0 + timedelta(hours=7, minutes=2), T0 + timedelta(hours=7, minutes=58)),  # inside one hour
]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
async def test_sample_and_bucket_paths_match_the_python_rule(
    db_url: str, start: datetime, end: datetime
) -> None:
    series = random_meters(random.Random(7), 12, T0)
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        await load(conn, series)
        samples = await store.energies(conn, start, end, buckets=False)
        buckets = await store.energies(conn, start, end, buckets=True)
    finally:
        await conn.close()
    want = rule(series, start, end)
    assert want  # the window holds data
    assert_same(samples, want)
    assert_same(buckets, want)


def test_whole_hours_of_a_window() -> None:
    h = timedelta(hours=1)
    assert store.whole_hours(T0 + 7 * h / 60, T0 + 3 * h) == (T0 + h, T0 + 3 * h)
    assert store.whole_hours(T0, T0 + 2 * h + h / 2) == (T0 + h, T0 + 2 * h)  # ts = start is outside


async def test_one_fleet_one_answer(db_url: str) -> None:
    """Counts, racks, utilisation and PUE of a seeded fleet — late rows, a meter
    backfilled a month back, register resets, a backward step — are the same on the
    sample path and the bucket path, and PUE is the Python rule's."""
    now = datetime(2025, 3, 1, 12, 34, tzinfo=UTC)
    window = 60.0
    start = now - timedelta(days=window)
    rnd = random.Random(11)
    series = random_meters(rnd, 6, now - timedelta(days=3))
    back = now - timedelta(days=40)
    series["dc-backfill"] = [(back + timedelta(minutes=15 * k), 1e3 + 9 * k, 8e2 + 7 * k) for k in range(800)]
    late = now - timedelta(days=20)  # rows of dc-0 written long after their time
    series["dc-0"][:0] = [(late + timedelta(minutes=15 * k), 10.0 + 5 * k, 8.0 + 4 * k) for k in range(8)]
    racks = {dev: (100.0 + 10 * i, 60.0 + 5 * i) for i, dev in enumerate(sorted(series))}
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        for i, dev in enumerate(sorted(series)):
            await conn.execute(
                "INSERT INTO devices (device_id, class, first_seen, last_seen, region, provisioned, "
                "attributes) VALUES ($1, 'datacenter', $2, $2, $3, true, $4::jsonb)",
                dev, now - timedelta(minutes=5 if i % 2 else 90), "guian" if i % 3 else "520100",
                '{"pue_category": 1}' if i % 4 else '{"pue_category": 2}',
            )  # fmt: skip
        await load(conn, series)
        await conn.executemany(
            "INSERT INTO readings_datacenter (device_id, ts, point, racks_built, racks_in_service) "
            "VALUES ($1, $2, '', $3, $4)",
            [(dev, now - timedelta(hours=2, seconds=7), b, u) for dev, (b, u) in racks.items()],
        )
        cfg = RollupConfig(pue_window_days=window)
        facts = await store.device_facts(conn, cfg, now)
        by_path = {b: await store.energies(conn, start, now, buckets=b) for b in (False, True)}
    finally:
        await conn.close()
    catalogue = load_catalogue()
    params = Params(now=now, window_days=window, pue_category=1)
    results = {b: rollup(catalogue, facts, e, params) for b, e in by_path.items()}
    assert results[False].fleet == results[True].fleet
    assert results[False].figures == results[True].figures
    want = rule(series, start, now)
    assert_same(by_path[True], want)
    figures = {k: f.value for k, f in results[True].figures.items()}
    category1 = [d.device_id for d in facts if d.pue_category == 1]
    assert figures[("dc_average_pue", "520000")] == pytest.approx(total(want[d] for d in category1).pue)
    assert figures[("dc_standard_racks", "520000")] == sum(b for b, _ in racks.values())
    assert figures[("dc_rack_utilization", "520000")] == pytest.approx(
        100 * sum(u for _, u in racks.values()) / sum(b for b, _ in racks.values())
    )
    built, online = results[True].fleet[("datacenter", "520000")]
    assert (built, online) == (len(series), sum(1 for i in range(len(series)) if i % 2))
