"""The registry of connected devices on the real PostgreSQL: a worker's rows of an
earlier run go at its first write, a worker that is gone for good leaves no rows
behind, a silent worker's rows are marked stale and written again when it comes back,
and the SL651 centre registers its stations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest.config import Sl651Config
from ingest.migrate import migrate
from ingest.sources.connections import ConnectionRegistry
from ingest.sources.sl651 import Sl651Source
from tests.ingest.intake import RecordingIntake
from tests.ingest.test_sl651_link import STATION, report


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    conn = await asyncpg.connect(db_url)
    await migrate(conn)
    await conn.close()
    p = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


async def rows(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    got = await pool.fetch("SELECT device_id, transport, worker FROM device_connections ORDER BY 1")
    return [tuple(r) for r in got]


async def age(pool: asyncpg.Pool, worker: str, seconds: float) -> None:
    """The worker's last heartbeat `seconds` ago."""
    await pool.execute(
        "UPDATE edge_workers SET seen_at = now() - make_interval(secs => $2) WHERE worker = $1",
        worker,
        seconds,
    )


async def test_a_worker_removes_its_earlier_rows_at_its_first_write(pool: asyncpg.Pool) -> None:
    t = datetime(2026, 7, 1, tzinfo=UTC)
    before = ConnectionRegistry(pool, "w1", "ocpp")
    before.connected("CP-1", "10.0.0.1:5000", t)
    before.connected("CP-2", "10.0.0.2:5000", t)
    assert await before.flush()
    # w1 dies and starts again: CP-2 comes back, CP-1 does not
    again = ConnectionRegistry(pool, "w1", "ocpp")
    again.connected("CP-2", "10.0.0.2:5001", t)
    assert await again.flush()
    assert await rows(pool) == [("CP-2", "ocpp", "w1")]


async def test_a_worker_gone_for_good_leaves_no_rows_and_is_stale_first(pool: asyncpg.Pool) -> None:
    t = datetime(2026, 7, 1, tzinfo=UTC)
    gone = ConnectionRegistry(pool, "w-gone", "ocpp", forget_after_s=600)
    gone.connected("CP-1", "10.0.0.1:5000", t)
    assert await gone.flush()
    alive = ConnectionRegistry(pool, "w-alive", "ocpp", forget_after_s=600)
    alive.connected("CP-2", "10.0.0.2:5000", t)
    assert await alive.flush()
    sl651 = ConnectionRegistry(pool, "w-gone", "sl651", forget_after_s=600)
    sl651.connected("0012345678", "10.0.0.3:6000", t)
    assert await sl651.flush()

    # Silent for 40 s: still listed, marked stale (the API's query)
    await age(pool, "w-gone", 40)
    assert await alive.beat()
    assert len(await rows(pool)) == 3
    stale = await pool.fetch(
        """SELECT c.device_id, w.seen_at IS NULL OR w.seen_at < now() - interval '30 s' AS stale
           FROM device_connections c LEFT JOIN edge_workers w USING (worker, transport) ORDER BY 1"""
    )
    assert [tuple(r) for r in stale] == [("0012345678", True), ("CP-1", True), ("CP-2", False)]

    # Silent for 11 minutes: the next heartbeat of an OCPP worker removes its OCPP rows;
    # its SL651 rows wait for an SL651 worker's heartbeat
    await age(pool, "w-gone", 660)
    assert await alive.beat()
    assert await rows(pool) == [("0012345678", "sl651", "w-gone"), ("CP-2", "ocpp", "w-alive")]
    workers = await pool.fetch("SELECT worker, transport FROM edge_workers ORDER BY 1, 2")
    assert [tuple(r) for r in workers] == [("w-alive", "ocpp"), ("w-gone", "sl651")]
    assert await ConnectionRegistry(pool, "w-other", "sl651").beat()
    assert await rows(pool) == [("CP-2", "ocpp", "w-alive")]


async def test_a_worker_whose_heartbeat_failed_writes_its_connections_again(
    pool: asyncpg.Pool, db_url: str
) -> None:
    t = datetime(2026, 7, 1, tzinfo=UTC)
    reg = ConnectionRegistry(pool, "w1", "ocpp")
    reg.connected("CP-1", "10.0.0.1:5000", t)
    reg.connected("CP-2", "10.0.0.2:5000", t)
    reg.disconnected("CP-2", t)
    assert await reg.flush()
    # The database is away long enough for another worker to take w1 for gone.
    dead = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:9/none", min_size=0, timeout=2)
    reg.pool = dead
    try:
        assert not await reg.beat()
    finally:
        reg.pool = pool
        await dead.close()
    await pool.execute("DELETE FROM device_connections")  # what the other worker did
    assert await reg.beat()  # back: what it holds is written again
    assert await reg.flush()
    assert await rows(pool) == [("CP-1", "ocpp", "w1")]


async def test_the_sl651_centre_registers_its_stations_by_their_frames(pool: asyncpg.Pool) -> None:
    intake = RecordingIntake()
    reg = ConnectionRegistry(pool, "w1", "sl651")
    src = Sl651Source(Sl651Config(enabled=True, port=0), "gz", intake, CollectorRegistry(), reg)
    task = asyncio.create_task(src.run())
    try:
        await asyncio.wait_for(src.listening.wait(), 5)
        assert src.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", src.port)
        writer.write(b"not a frame")
        await asyncio.sleep(0.2)
        assert reg.live == 0  # no valid frame yet: no station known
        writer.write(report(serial=1))
        await intake.wait(1)
        assert await reg.flush()
        listed = await pool.fetch("SELECT device_id, transport, worker, remote FROM device_connections")
        assert [tuple(r)[:3] for r in listed] == [(STATION, "sl651", "w1")]
        assert listed[0]["remote"].startswith("127.0.0.1:")
        writer.close()
        while src.connections:  # noqa: ASYNC110 - the source's loss callback, no event to await
            await asyncio.sleep(0.01)
        assert await reg.flush()
        assert await rows(pool) == []
    finally:
        await src.close()
        await asyncio.wait_for(task, 5)
