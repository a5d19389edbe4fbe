"""The registry of devices connected to an edge endpoint now (tables
`device_connections` and `edge_workers`, migrations 006 and 007), kept by the OCPP
central system and by the SL651 centre alike.

Connects and hang-ups wait in memory and are written in batches, so that a reconnect
storm is a few statements, not one per device. The registry is advisory: a database
that refuses or is away only delays it, and what was not written is written later.

A worker that dies cannot remove its rows, so every worker keeps a row of its own in
`edge_workers` fresh (`seen_at`, on the database's clock) every `heartbeat_s`. The
API marks a connection `stale` once its worker has been silent for three heartbeats;
the rows of a worker silent for `forget_after_s` (gone for good: scaled down, or
restarted under another name) are removed by any other worker's next heartbeat. A
worker removes its own rows when it starts, and writes its live connections again
after a heartbeat that could not be written (another worker may have forgotten them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

import asyncpg

from ingest.writer import TRANSIENT

log = logging.getLogger(__name__)

__all__ = ["FORGET_AFTER_S", "HEARTBEAT_S", "STALE_AFTER_S", "ConnectionRegistry"]

HEARTBEAT_S = 10.0
STALE_AFTER_S = 3 * HEARTBEAT_S
FORGET_AFTER_S = 600.0

_CONNECT = """
INSERT INTO device_connections (device_id, transport, worker, remote, connected_since)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT (device_id) DO UPDATE SET transport = EXCLUDED.transport, worker = EXCLUDED.worker,
    remote = EXCLUDED.remote, connected_since = EXCLUDED.connected_since
"""
_DISCONNECT = """
DELETE FROM device_connections c USING unnest($1::text[], $2::timestamptz[]) AS g(device_id, since)
WHERE c.device_id = g.device_id AND c.worker = $3 AND c.connected_since = g.since
"""
_BEAT = """
INSERT INTO edge_workers (worker, transport, seen_at) VALUES ($1, $2, now())
ON CONFLICT (worker, transport) DO UPDATE SET seen_at = now()
"""
_FORGET_CONNECTIONS = """
DELETE FROM device_connections c
WHERE c.transport = $1 AND NOT EXISTS (
    SELECT 1 FROM edge_workers w
    WHERE w.worker = c.worker AND w.transport = c.transport
      AND w.seen_at > now() - make_interval(secs => $2))
"""
_FORGET_WORKERS = """
DELETE FROM edge_workers WHERE transport = $1 AND seen_at <= now() - make_interval(secs => $2)
"""


class ConnectionRegistry:
    def __init__(
        self,
        pool: Any,
        worker: str,
        transport: str,
        heartbeat_s: float = HEARTBEAT_S,
        forget_after_s: float = FORGET_AFTER_S,
    ) -> None:
        self.pool = pool
        self.worker = worker
        self.transport = transport
        self.heartbeat_s = heartbeat_s
        self.forget_after_s = forget_after_s
        # Changes waiting for the next flush: device -> (remote, since) for a connect,
        # device -> since for the hang-up of the connection that began then.
        self._connects: dict[str, tuple[str, datetime]] = {}
        self._disconnects: dict[str, datetime] = {}
        self._live: dict[str, tuple[str, datetime]] = {}  # what this worker holds now
        self._dirty = asyncio.Event()
        self._flushing = asyncio.Lock()  # one flush at a time, so a flush sees the last one done
        self._beat_failed = False
        self._cleared = False  # this worker's rows of an earlier run are removed

    @property
    def live(self) -> int:
        return len(self._live)

    def connected(self, device_id: str, remote: str, since: datetime) -> None:
        self._live[device_id] = (remote, since)
        self._connects[device_id] = (remote, since)
        self._disconnects.pop(device_id, None)
        self._dirty.set()

    def disconnected(self, device_id: str, since: datetime) -> None:
        live = self._live.get(device_id)
        if live is not None and live[1] == since:
            del self._live[device_id]
        pending = self._connects.get(device_id)
        if pending is not None and pending[1] == since:
            del self._connects[device_id]  # never written: nothing to remove
        self._disconnects[device_id] = since
        self._dirty.set()

    async def _clear(self, conn: Any) -> None:
        """Once, before this worker's first write: it holds no connection yet. It says
        it is alive first, so that no other worker takes its new rows for a dead one's."""
        await conn.execute(_BEAT, self.worker, self.transport)
        await conn.execute(
            "DELETE FROM device_connections WHERE worker = $1 AND transport = $2", self.worker, self.transport
        )
        await self._forget(conn)

    async def _forget(self, conn: Any) -> None:
        """Remove the rows of workers silent for `forget_after_s`."""
        gone = await conn.execute(_FORGET_CONNECTIONS, self.transport, self.forget_after_s)
        await conn.execute(_FORGET_WORKERS, self.transport, self.forget_after_s)
        if gone != "DELETE 0":
            log.info(
                "%s connection registry: removed %s rows of workers silent for %g s",
                self.transport,
                gone.split()[-1],
                self.forget_after_s,
            )

    async def beat(self) -> bool:
        """Say this worker is alive and forget the workers gone for good; False when
        the database refused or is away (the next beat tries again)."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(_BEAT, self.worker, self.transport)
                await self._forget(conn)
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            log.warning(
                "%s connection registry: heartbeat not written (%s)", self.transport, exc.__class__.__name__
            )
            self._beat_failed = True
            return False
        if self._beat_failed:
            # Silent for a while: another worker may have taken this one for gone and
            # removed its rows. Write what it holds again (the upsert is idempotent).
            self._beat_failed = False
            for dev, v in self._live.items():
                self._connects.setdefault(dev, v)
            if self._live:
                self._dirty.set()
        return True

    async def flush(self) -> bool:
        """Write the pending changes (the first flush removes this worker's rows of an
        earlier run first); False (kept for the next flush) when the database refused
        or is away."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        connects, self._connects = self._connects, {}
        disconnects, self._disconnects = self._disconnects, {}
        self._dirty.clear()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if not self._cleared:
                    await self._clear(conn)
                if disconnects:
                    await conn.execute(
                        _DISCONNECT, list(disconnects), list(disconnects.values()), self.worker
                    )
                if connects:
                    devs = sorted(connects)
                    await conn.execute(
                        _CONNECT,
                        devs,
                        [self.transport] * len(devs),
                        [self.worker] * len(devs),
                        [connects[d][0] for d in devs],
                        [connects[d][1] for d in devs],
                    )
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            log.warning(
                "%s connection registry not written (%s); retrying", self.transport, exc.__class__.__name__
            )
            for dev, v in connects.items():
                self._connects.setdefault(dev, v)
            for dev, since in disconnects.items():
                self._disconnects.setdefault(dev, since)
            self._dirty.set()
            return False
        self._cleared = True
        return True

    async def run(self, interval_s: float = 1.0) -> None:
        """Write changes at most once per interval, and a heartbeat every `heartbeat_s`;
        the first flush (at once) removes this worker's rows of an earlier run."""
        self._dirty.set()
        next_beat = time.monotonic() + self.heartbeat_s
        while True:
            wait = max(0.0, next_beat - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), wait)
            if time.monotonic() >= next_beat:
                await self.beat()
                next_beat = time.monotonic() + self.heartbeat_s
            if self._dirty.is_set():
                await self.flush()
                await asyncio.sleep(interval_s)
