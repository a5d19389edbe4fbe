"""Late readings into the continuous aggregates.

TimescaleDB's refresh policies look back a few days (ingest/schema_sql.py: 3 days
hourly, 7 days daily), while the writer accepts readings up to `accept.horizon_days`
old. A reading older than a policy's window invalidates its buckets, but no policy
ever refreshes them. So the writer records, in the commit of a batch that carried
readings older than `LATE_AFTER`, the time range of those readings per hypertable
(`late_ranges`, migration 004); `refresh_late` — run by the rollup every
`rollup.interval_s`, before it reads the aggregates — refreshes exactly those
ranges (bucket-aligned, merged) with `refresh_continuous_aggregate`, then deletes
them. On plain PostgreSQL the rollups are views and the job only deletes.

On a day with nothing late the writer issues no SQL at all (a `min` over each
batch's time stamps in Python) and the job one `SELECT` of an empty table.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import asyncpg

from ingest.schema_sql import ROLLUPS, Rollup, refreshed_aggregates

log = logging.getLogger(__name__)

# A reading older than this is late: every policy still reaches a younger one at its
# next run (start_offset - schedule_interval is 2 d 23.5 h for the hourly policy,
# 6 d for the daily), with half a day to spare for clocks and delayed jobs.
LATE_AFTER = timedelta(days=2, hours=12)
assert all(r.start_offset - r.schedule > LATE_AFTER for r in ROLLUPS)

_LOCK_KEY = 0x1E57_0002  # advisory lock: one worker refreshes at a time
_BATCH = 1000  # ranges taken per round
MAX_WINDOW = timedelta(days=30)  # the longest window one refresh CALL covers
BEIJING = timedelta(hours=8)  # Asia/Shanghai has had no daylight saving since 1991

RECORD = "INSERT INTO late_ranges (hypertable, lo, hi) VALUES ($1, $2, $3)"
PENDING = "SELECT id, hypertable, lo, hi FROM late_ranges ORDER BY id LIMIT $1"
DONE = "DELETE FROM late_ranges WHERE id = ANY($1::bigint[])"

_ts = itemgetter(1)  # a readings row is (device_id, ts, point, seq, *values)


def late_span(rows: Sequence[tuple[Any, ...]], now: datetime) -> tuple[datetime, datetime] | None:
    """(oldest, newest) time of the late rows of one table's batch, or None."""
    cutoff = now - LATE_AFTER
    oldest: datetime = min(map(_ts, rows))
    if oldest >= cutoff:
        return None
    return oldest, max(t for t in map(_ts, rows) if t < cutoff)


LateRange = tuple[str, datetime, datetime]  # (hypertable, oldest, newest)


def late_records(tables: Iterable[tuple[str, Sequence[tuple[Any, ...]]]], now: datetime) -> list[LateRange]:
    out = []
    for table, rows in tables:
        if rows and (span := late_span(rows, now)) is not None:
            out.append((table, *span))
    return out


def align(lo: datetime, hi: datetime, rollup: Rollup) -> tuple[datetime, datetime]:
    """The smallest window of whole buckets holding [lo, hi]: TimescaleDB refreshes
    only the buckets that lie wholly inside the window it is given."""
    shift = BEIJING if rollup.local else timedelta(0)
    origin = datetime(2000, 1, 1, tzinfo=UTC) - shift
    width = rollup.width
    start = origin + ((lo - origin) // width) * width
    end = origin + ((hi - origin) // width + 1) * width
    return start, end


def pieces(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) in windows of at most MAX_WINDOW: each CALL is one transaction, and
    a year of backfill in one would hold its locks and WAL for the whole year's work.
    MAX_WINDOW is whole days, so pieces of an aligned window stay aligned."""
    out = []
    while start < end:
        out.append((start, min(start + MAX_WINDOW, end)))
        start += MAX_WINDOW
    return out


def merge(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(windows):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _literal(t: datetime) -> str:
    return f"TIMESTAMPTZ '{t.astimezone(UTC).isoformat()}'"


@dataclass(frozen=True, slots=True)
class Refresh:
    view: str
    start: datetime
    end: datetime

    def sql(self) -> str:
        # CALL, one statement per call: the procedure refuses to run in a transaction
        # block, and a multi-statement query string is one.
        window = f"{_literal(self.start)}, {_literal(self.end)}"
        return f"CALL refresh_continuous_aggregate('{self.view}', {window})"


def refreshes(ranges: Iterable[tuple[str, datetime, datetime]]) -> list[Refresh]:
    """What brings the recorded ranges into every aggregate of their hypertables."""
    by_view: dict[str, tuple[Rollup, list[tuple[datetime, datetime]]]] = {}
    aggs = refreshed_aggregates()
    for table, lo, hi in ranges:
        for view, rollup in aggs.get(table, ()):
            by_view.setdefault(view, (rollup, []))[1].append(align(lo, hi, rollup))
    return [
        Refresh(view, s, e)
        for view, (_, ws) in sorted(by_view.items())
        for start, end in merge(ws)
        for s, e in pieces(start, end)
    ]


async def refresh_late(conn: Any, timescale: bool) -> list[Refresh]:
    """Refresh the aggregates over the recorded late ranges and forget them; returns
    what was refreshed. `conn` must not be inside a transaction."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
        return []  # another worker is at it
    done: list[Refresh] = []
    try:
        while rows := await conn.fetch(PENDING, _BATCH):
            todo = refreshes((r["hypertable"], r["lo"], r["hi"]) for r in rows)
            if timescale:
                for r in todo:
                    await conn.execute(r.sql())
                    log.info("refreshed %s over [%s, %s) for late readings", r.view, r.start, r.end)
            done += todo
            await conn.execute(DONE, [r["id"] for r in rows])
            if len(rows) < _BATCH:
                break
    finally:
        if not conn.is_closed():  # a closed session released the lock, and its error stands
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return done
