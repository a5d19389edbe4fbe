"""Late readings reach the aggregates: what the writer records for readings older
than the refresh policies' windows, the TimescaleDB SQL the refresh job issues for
them (as text, parsed and checked: TimescaleDB cannot run here), and on plain
PostgreSQL the hourly and daily figures that include them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pglast
import pytest
from pglast import ast

from adapters import CLASSES, Decoded
from ingest import aggregates
from ingest.aggregates import LATE_AFTER, Refresh, align, late_span, refresh_late, refreshes
from ingest.batch import Batch
from ingest.migrate import migrate, migrations
from ingest.schema_sql import DAILY, HOURLY, ROLLUPS, refreshed_aggregates
from ingest.writer import Writer

NOW = datetime.now(UTC)
H = timedelta(hours=1)


def reading(dev: str, ts: datetime, level: float) -> Decoded:
    values: list[float | None] = [None] * len(CLASSES[0].metrics)
    values[CLASSES[0].metric_index["level_m"]] = level
    return Decoded("reservoir", dev, ts, [("", values)])


def test_late_means_outside_every_policy_window() -> None:
    for r in ROLLUPS:
        assert r.start_offset - r.schedule > LATE_AFTER  # younger rows: the policy's next run
    rows = [("d", NOW - timedelta(days=d), "", None) for d in (0, 1, 2)]
    assert late_span(rows, NOW) is None
    old = [*rows, ("d", NOW - timedelta(days=10), "", None), ("d", NOW - timedelta(days=200), "", None)]
    assert late_span(old, NOW) == (NOW - timedelta(days=200), NOW - timedelta(days=10))


def test_windows_are_whole_buckets() -> None:
    t = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

    def at(day: int, hour: int) -> datetime:
        return datetime(2026, 3, day, hour, tzinfo=UTC)

    assert align(t, t + 2 * H, HOURLY) == (at(4, 5), at(4, 8))
    # daily buckets are Beijing days: midnight +08:00 is 16:00 UTC the day before
    assert align(t, t, DAILY) == (at(3, 16), at(4, 16))
    # overlapping ranges of one aggregate become one refresh
    todo = refreshes([("readings_reservoir", t, t + H), ("readings_reservoir", t + 2 * H, t + 3 * H)])
    assert [(r.view, r.start, r.end) for r in todo] == [
        ("readings_reservoir_daily", at(3, 16), at(4, 16)),
        ("readings_reservoir_hourly", at(4, 5), at(4, 9)),
    ]


def continuous_aggregates() -> set[str]:
    """Every continuous aggregate the TimescaleDB migrations create."""
    names = set()
    for m in migrations():
        for raw in pglast.parse_sql(m.sql(timescale=True)):
            if isinstance(raw.stmt, ast.CreateTableAsStmt):
                names.add(raw.stmt.into.rel.relname)
    return names


def test_refresh_sql_is_exact() -> None:
    """One CALL per aggregate of the hypertable, its view a continuous aggregate the
    migrations create, its window two timestamptz literals on bucket edges."""
    lo, hi = NOW - timedelta(days=200, minutes=7), NOW - timedelta(days=10)
    todo = refreshes([("readings_datacenter", lo, hi)])
    assert {r.view for r in todo} == {v for v, _ in refreshed_aggregates()["readings_datacenter"]}
    assert {r.view for r in todo} <= continuous_aggregates()
    for r in todo:
        (raw,) = pglast.parse_sql(r.sql())
        call = raw.stmt
        assert isinstance(call, ast.CallStmt)
        fn = call.funccall
        assert fn.funcname[-1].sval == "refresh_continuous_aggregate"
        view, start, end = fn.args
        assert view.val.sval == r.view
        for arg, want in ((start, r.start), (end, r.end)):
            assert isinstance(arg, ast.TypeCast) and arg.typeName.names[-1].sval == "timestamptz"
            assert datetime.fromisoformat(arg.arg.val.sval) == want
    assert todo[0].start <= lo and hi < todo[-1].end
    by_view: dict[str, list[Refresh]] = {}
    for r in todo:
        by_view.setdefault(r.view, []).append(r)
        assert r.end - r.start <= aggregates.MAX_WINDOW
    for parts in by_view.values():  # contiguous pieces covering the whole range
        assert all(a.end == b.start for a, b in itertools.pairwise(parts))
        assert parts[0].start <= lo and hi < parts[-1].end


async def test_late_readings_are_recorded_refreshed_and_in_the_rollups(db_url: str) -> None:
    writer = Writer(CLASSES)
    fresh = Batch(0.0)
    fresh.add(reading("res-1", NOW - H, 100.0), NOW, None)
    late = Batch(0.0)
    ten, old = (NOW - timedelta(days=10)).replace(minute=20), (NOW - timedelta(days=200)).replace(minute=20)
    for ts, level in ((ten, 300.0), (ten + timedelta(minutes=10), 310.0), (old, 50.0)):
        late.add(reading("res-1", ts, level), NOW, None)
    late.add(reading("res-1", NOW - H / 2, 120.0), NOW, None)  # not late, same batch
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        await writer.prepare(conn)
        await writer.write(conn, fresh, [])
        assert await conn.fetchval("SELECT count(*) FROM late_ranges") == 0  # nothing late, nothing written
        await writer.write(conn, late, [])
        rows = await conn.fetch("SELECT hypertable, lo, hi FROM late_ranges")
        assert [tuple(r) for r in rows] == [("readings_reservoir", old, ten + timedelta(minutes=10))]

        done = await refresh_late(conn, timescale=False)  # plain: nothing to refresh, only forget
        assert {r.view for r in done} == {"readings_reservoir_hourly", "readings_reservoir_daily"}
        assert min(r.start for r in done) <= old and ten < max(r.end for r in done)
        assert all(isinstance(r, Refresh) and "refresh_continuous_aggregate" in r.sql() for r in done)
        assert await conn.fetchval("SELECT count(*) FROM late_ranges") == 0
        assert await refresh_late(conn, timescale=False) == []  # a day with nothing late

        hourly = await conn.fetchrow(
            "SELECT n, level_m_avg FROM readings_reservoir_hourly WHERE device_id = 'res-1' AND bucket = $1",
            ten.replace(minute=0, second=0, microsecond=0),
        )
        assert (hourly["n"], hourly["level_m_avg"]) == (2, pytest.approx(305.0))
        daily = await conn.fetch(
            "SELECT bucket, n FROM readings_reservoir_daily WHERE device_id = 'res-1' ORDER BY bucket"
        )
        assert sum(r["n"] for r in daily) == 5 and len(daily) >= 3
        assert align(old, old, DAILY)[0] == daily[0]["bucket"]
    finally:
        await conn.close()


def test_the_job_takes_one_lock() -> None:
    assert aggregates.PENDING.startswith("SELECT") and "late_ranges" in aggregates.PENDING
    assert pglast.parse_sql(aggregates.PENDING) and pglast.parse_sql(aggregates.DONE)
    assert pglast.parse_sql(aggregates.RECORD)
