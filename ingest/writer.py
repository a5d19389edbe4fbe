"""Writer: commits a batch to PostgreSQL in one transaction with COPY.

The common path COPYs straight into the tables, whose unique keys make a repeated
(device, point, time) fail the whole COPY. Only then, which happens after a
redelivery, the batch is written again through a staging table with
`INSERT … ON CONFLICT DO NOTHING`: duplicate-free batches never pay for
deduplication (../shared/LIMITS.md: ~200k rows/s against ~125k).

Readings older than aggregates.LATE_AFTER are recorded in the same commit
(`late_ranges`: their time range per table) for the aggregates' refresh; a batch
with none costs one `min` over its time stamps and no SQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from adapters import DeviceClass
from ingest.aggregates import RECORD as LATE_RECORD
from ingest.aggregates import late_records
from ingest.batch import Batch, DeviceTouch
from ingest.registry import UPSERT, upsert_args

log = logging.getLogger(__name__)

STATE_COLUMNS = ("device_id", "class", "ts", "point", "name", "value")
DEAD_COLUMNS = ("received_at", "topic", "payload", "reason", "detail")
# A dead letter is stored once per (topic, payload): a redelivered refusal is the same one.
DEAD_ONCE = (
    "INSERT INTO dead_letters (received_at, topic, payload, reason, detail) "
    "SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bytea[], $4::text[], $5::text[]) "
    "ON CONFLICT (digest) DO NOTHING"
)

# Errors after which the same batch may succeed on a new connection.
TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
# Another transaction in the way (SQLSTATE 40P01, 40001): retried at once, not waited out.
CONFLICT = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)


def lost_connection(exc: BaseException, conn: Any) -> bool:
    """Whether `exc` means the database connection is gone, whatever the driver raised:
    a server stopped in the middle of a COPY can surface as asyncpg's
    InternalClientError ('cannot switch to state …') rather than a connection error."""
    return isinstance(exc, (*TRANSIENT, asyncpg.InternalClientError)) or (
        conn is not None and conn.is_closed()
    )


@dataclass(frozen=True, slots=True)
class WriteResult:
    rows: int
    deduplicated: bool
    rejected_rows: int = 0


class Writer:
    """Knows the tables; holds no connection (the caller owns it)."""

    def __init__(self, classes: Iterable[DeviceClass]) -> None:
        self._tables = {c.name: c.table for c in classes}
        self._columns = {c.name: ("device_id", "ts", "point", "seq", *c.columns) for c in classes}

    async def write(self, conn: Any, batch: Batch, devices: list[tuple[str, DeviceTouch]]) -> WriteResult:
        rows = batch.row_count + len(batch.dead)
        late = self._late(batch)
        try:
            async with conn.transaction():
                await self._copy(conn, batch, dedup=False)
                await self._devices(conn, devices)
                await self._record_late(conn, late)
            return WriteResult(rows, False)
        except asyncpg.UniqueViolationError:
            log.debug("a batch met an already stored key: writing it again with deduplication")
        async with conn.transaction():
            await self._copy(conn, batch, dedup=True)
            await self._devices(conn, devices)
            await self._record_late(conn, late)
        return WriteResult(rows, True)

    def _late(self, batch: Batch) -> list[tuple[str, datetime, datetime]]:
        return late_records(((self._tables[c], rows) for c, rows in batch.rows.items()), datetime.now(UTC))

    async def _record_late(self, conn: Any, late: list[tuple[str, datetime, datetime]]) -> None:
        if late:
            await conn.executemany(LATE_RECORD, late)

    async def mismatched(self, conn: Any, batch: Batch) -> list[tuple[str, str]]:
        """The devices of `batch` this worker did not know that the database registers
        under another class than their messages claim, with that class."""
        claimed = {dev: batch.devices[dev].device_class for dev in batch.unverified if dev in batch.devices}
        if not claimed:
            return []
        rows = await conn.fetch(
            "SELECT device_id, class FROM devices WHERE device_id = ANY($1::text[])", list(claimed)
        )
        return [(r["device_id"], r["class"]) for r in rows if r["class"] != claimed[r["device_id"]]]

    async def _devices(self, conn: Any, devices: list[tuple[str, DeviceTouch]]) -> None:
        if devices:
            await conn.execute(UPSERT, *upsert_args(devices))

    async def _copy(self, conn: Any, batch: Batch, dedup: bool) -> None:
        for cls, rows in batch.rows.items():
            if rows:
                await self._put(conn, self._tables[cls], self._columns[cls], rows, dedup)
        if batch.states:
            await self._put(conn, "state_events", STATE_COLUMNS, batch.states, dedup)
        if batch.dead:
            if dedup:
                await conn.execute(DEAD_ONCE, *map(list, zip(*batch.dead, strict=True)))
            else:
                await conn.copy_records_to_table("dead_letters", records=batch.dead, columns=DEAD_COLUMNS)

    async def _put(
        self, conn: Any, table: str, columns: tuple[str, ...], rows: list[Any], dedup: bool
    ) -> None:
        if not dedup:
            await conn.copy_records_to_table(table, records=rows, columns=columns)
            return
        stage = f"stage_{table}"
        await conn.copy_records_to_table(stage, records=rows, columns=columns)
        cols = ", ".join(columns)
        await conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING")

    async def prepare(self, conn: Any) -> None:
        """Create this connection's staging tables (temporary: they live with it)."""
        for table in [*self._tables.values(), "state_events"]:
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} "
                f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )

    async def salvage(
        self, conn: Any, batch: Batch, devices: list[tuple[str, DeviceTouch]], received_at: Any
    ) -> WriteResult:
        """PostgreSQL refused the batch for a reason other than a duplicate: write it
        row by row, each in a savepoint, and dead-letter the rows it refuses with the
        reason. Slow, and only ever taken after a refusal."""
        refused: list[tuple[Any, ...]] = []
        written = 0
        async with conn.transaction():
            targets: list[tuple[str, tuple[str, ...], list[Any]]] = [
                (self._tables[c], self._columns[c], rows) for c, rows in batch.rows.items()
            ]
            targets.append(("state_events", STATE_COLUMNS, batch.states))
            for table, columns, rows in targets:
                marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
                for row in rows:
                    try:
                        async with conn.transaction():
                            await conn.execute(sql, *row)
                        written += 1
                    except asyncpg.PostgresError as exc:
                        if isinstance(exc, TRANSIENT):
                            raise
                        text = repr(row).encode("utf-8", "backslashreplace")
                        refused.append((received_at, table, text, "db_rejected", str(exc)))
            for dead in [*batch.dead, *refused]:
                try:
                    async with conn.transaction():
                        await conn.execute(DEAD_ONCE, *([v] for v in dead))
                except asyncpg.PostgresError as exc:
                    if isinstance(exc, TRANSIENT):
                        raise
                    safe = (
                        dead[0],
                        dead[1].encode("unicode_escape").decode(),
                        dead[2],
                        dead[3],
                        dead[4].encode("unicode_escape").decode(),
                    )
                    await conn.execute(DEAD_ONCE, *([v] for v in safe))
                written += 1
            await self._devices(conn, devices)
            await self._record_late(conn, self._late(batch))
        return WriteResult(written, True, len(refused))
