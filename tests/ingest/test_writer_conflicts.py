"""A real deadlock between two PostgreSQL sessions (40P01) is what the driver's
CONFLICT retries at once, not an outage; the batch then commits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from adapters import CLASSES, Decoded
from ingest.batch import Batch, DeviceTouch
from ingest.migrate import migrate
from ingest.writer import CONFLICT, Writer

NOW = datetime.now(UTC).replace(microsecond=0)


async def wait_blocked(conn: asyncpg.Connection, pid: int) -> None:
    """Until session `pid` waits for a lock (PostgreSQL offers no event for it)."""
    for _ in range(3000):
        if await conn.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"session {pid} never waited for a lock")


async def test_a_real_deadlock_is_a_conflict_not_an_outage(db_url: str) -> None:
    values: list[float | None] = [None] * len(CLASSES[0].metrics)
    values[CLASSES[0].metric_index["level_m"]] = 101.5
    batch = Batch(0.0)
    batch.add(Decoded("reservoir", "res-1", NOW, [("", values)]), NOW, None)
    touch = [("res-1", DeviceTouch("reservoir", NOW, NOW, NOW))]
    writer_conn = await asyncpg.connect(db_url)
    other = await asyncpg.connect(db_url)
    try:
        await migrate(writer_conn, use_timescale=False)
        await other.execute(
            "INSERT INTO devices (device_id, class, first_seen, last_seen) "
            "VALUES ('res-1', 'reservoir', $1, $1)",
            NOW - timedelta(days=1),
        )
        writer = Writer(CLASSES)
        await writer.prepare(writer_conn)
        # the writer's session detects the cycle first, so it is the one that loses
        await writer_conn.execute("SET deadlock_timeout = '50ms'")
        await other.execute("SET deadlock_timeout = '10s'")
        tr = other.transaction()
        await tr.start()
        await other.execute("SELECT 1 FROM devices WHERE device_id = 'res-1' FOR UPDATE")
        write = asyncio.create_task(writer.write(writer_conn, batch, touch))
        write.add_done_callback(lambda t: t.exception())
        # the writer holds its new reading's key and waits for the device row ...
        await wait_blocked(other, writer_conn.get_server_pid())
        # ... which the other session holds while it inserts the same key: a cycle
        await other.execute(
            "INSERT INTO readings_reservoir (device_id, ts, point, level_m) VALUES ('res-1', $1, '', 101.5)",
            NOW,
        )
        await tr.commit()
        with pytest.raises(CONFLICT) as lost:
            await asyncio.wait_for(write, 30)
        assert lost.value.sqlstate == "40P01"
        result = await writer.write(writer_conn, batch, touch)  # what the driver does at once
        assert result.deduplicated  # it met the other session's committed row
        assert await other.fetchval("SELECT count(*) FROM readings_reservoir") == 1
        last = await other.fetchval("SELECT last_seen FROM devices WHERE device_id = 'res-1'")
        assert last == NOW
    finally:
        await writer_conn.close()
        await other.close()
