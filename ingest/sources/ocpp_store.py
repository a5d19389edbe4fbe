"""What the OCPP central system keeps in PostgreSQL besides readings: charge point
keys, idTags and transactions (migration 006).

Readings go through the pipeline like every other message; this module holds the
few answers a central system must give from its own state (a transaction id, an
idTag's status, whether a key is right); its `connections` are the registry of
connected charge points (`ingest.sources.connections`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime
from typing import Any

import orjson

from ingest.sources.connections import ConnectionRegistry

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


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


class OcppStore:
    def __init__(self, pool: Any, worker: str) -> None:
        self.pool = pool
        self.connections = ConnectionRegistry(pool, worker, "ocpp")

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
