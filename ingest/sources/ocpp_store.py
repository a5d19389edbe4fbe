"""What the OCPP central system keeps in PostgreSQL besides readings: charge point
keys, idTags, transactions, and the table of connected devices (migration 006).

Readings go through the pipeline like every other message; this module holds the
few answers a central system must give from its own state (a transaction id, an
idTag's status, whether a key is right) and the connection registry, written in
batches so that a reconnect storm is a few statements, not one per charge point.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from ingest.writer import TRANSIENT

log = logging.getLogger(__name__)

__all__ = ["OcppStore", "hash_key", "new_key"]

KEY_BYTES = 20  # 160 bits, 40 hex characters: the longest AuthorizationKey OCPP allows


def hash_key(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode()).digest()


async def new_key(conn: Any, device_id: str) -> str:
    """Generate, store (as a salted hash) and return a new key for a charge point;
    the previous key stops working."""
    key = secrets.token_hex(KEY_BYTES)
    salt = secrets.token_bytes(16)
    await conn.execute(
        """INSERT INTO ocpp_keys (device_id, salt, sha256) VALUES ($1, $2, $3)
           ON CONFLICT (device_id) DO UPDATE
           SET salt = EXCLUDED.salt, sha256 = EXCLUDED.sha256, created_at = now()""",
        device_id,
        salt,
        hash_key(salt, key),
    )
    return key


_START = """
INSERT INTO ocpp_transactions AS t (device_id, connector_id, id_tag, started_at, meter_start, reservation_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (device_id, connector_id, started_at) DO UPDATE SET id_tag = t.id_tag
RETURNING transaction_id
"""
_STOP = """
UPDATE ocpp_transactions SET stopped_at = $3, meter_stop = $4, stop_reason = $5
WHERE transaction_id = $1 AND device_id = $2
RETURNING connector_id
"""
_ORPHAN = """
INSERT INTO ocpp_orphan_stops (device_id, transaction_id, stopped_at, meter_stop, id_tag, reason,
                               transaction_data, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
ON CONFLICT DO NOTHING
"""
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


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


class OcppStore:
    def __init__(self, pool: Any, worker: str, transport: str = "ocpp") -> None:
        self.pool = pool
        self.worker = worker
        self.transport = transport
        # Connection changes waiting for the next flush: device -> (remote, since) or
        # None for a hang-up of the connection that began at `since`.
        self._connects: dict[str, tuple[str, datetime]] = {}
        self._disconnects: dict[str, datetime] = {}
        self._dirty = asyncio.Event()
        self._flushing = asyncio.Lock()  # one flush at a time, so a flush sees the last one done

    # ---- answers ----

    async def key_ok(self, device_id: str, key: str) -> bool:
        row = await self.pool.fetchrow("SELECT salt, sha256 FROM ocpp_keys WHERE device_id = $1", device_id)
        if row is None:
            hash_key(b"", key)  # the same work whether or not the charge point is known
            return False
        return hmac.compare_digest(bytes(row["sha256"]), hash_key(bytes(row["salt"]), key))

    async def id_tag_info(self, id_tag: str) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            "SELECT status, expiry_date, parent_id_tag FROM ocpp_id_tags WHERE id_tag = $1", id_tag
        )
        if row is None:
            return {"status": "Invalid"}
        info: dict[str, Any] = {"status": row["status"]}
        if row["expiry_date"] is not None:
            info["expiryDate"] = row["expiry_date"].isoformat()
        if row["parent_id_tag"] is not None:
            info["parentIdTag"] = row["parent_id_tag"]
        return info

    async def start(self, device_id: str, p: dict[str, Any]) -> int:
        tid: int = await self.pool.fetchval(
            _START,
            device_id,
            p["connectorId"],
            p["idTag"],
            _ts(p["timestamp"]),
            p["meterStart"],
            p.get("reservationId"),
        )
        return tid

    async def stop(self, device_id: str, p: dict[str, Any], received_at: datetime) -> int | None:
        """Record a StopTransaction (once, however often it is sent); the connector of
        the transaction, or None when this central system did not start it."""
        tid, at, meter = p["transactionId"], _ts(p["timestamp"]), p["meterStop"]
        connector: int | None = None
        if tid > 0:
            connector = await self.pool.fetchval(_STOP, tid, device_id, at, meter, p.get("reason"))
        if connector is None:
            data = p.get("transactionData")
            await self.pool.execute(
                _ORPHAN,
                device_id,
                tid,
                at,
                meter,
                p.get("idTag"),
                p.get("reason"),
                None if data is None else orjson.dumps(data).decode(),
                received_at,
            )
        return connector

    # ---- the connection registry ----

    def connected(self, device_id: str, remote: str, since: datetime) -> None:
        self._connects[device_id] = (remote, since)
        self._disconnects.pop(device_id, None)
        self._dirty.set()

    def disconnected(self, device_id: str, since: datetime) -> None:
        pending = self._connects.get(device_id)
        if pending is not None and pending[1] == since:
            del self._connects[device_id]  # never written: nothing to remove
        self._disconnects[device_id] = since
        self._dirty.set()

    async def clear(self) -> None:
        """At start: this worker holds no connection yet."""
        await self.pool.execute(
            "DELETE FROM device_connections WHERE worker = $1 AND transport = $2", self.worker, self.transport
        )

    async def flush(self) -> bool:
        """Write the pending connection changes; False (kept for the next flush) when the
        database refused or is away: the registry of connections is advisory."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        connects, self._connects = self._connects, {}
        disconnects, self._disconnects = self._disconnects, {}
        self._dirty.clear()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
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
            log.warning("connection registry not written (%s); retrying", exc.__class__.__name__)
            for dev, v in connects.items():
                self._connects.setdefault(dev, v)
            for dev, since in disconnects.items():
                self._disconnects.setdefault(dev, since)
            self._dirty.set()
            return False
        return True

    async def run(self, interval_s: float = 1.0) -> None:
        """Write connection changes at most once per interval."""
        while True:
            await self._dirty.wait()
            await self.flush()
            await asyncio.sleep(interval_s)
