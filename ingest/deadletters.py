"""Dead letters: what was refused, for the people who must fix it. Listing and
filtering, one letter, a device's latest refusal, the retention, and replay.

Replay runs stored dead letters through today's adapters with the worker's own
parts — `Dispatcher.decode`, `Batch`, `RegistryCache.due`, `Writer.write` — so what
decodes now is stored exactly as the worker stores it (idempotent: the unique keys
deduplicate, the registry is updated) and its dead letter is marked replayed in the
same transaction. Each letter keeps its own reception time: a replay answers "would
this message be accepted today", not "pretend it arrived now" (a device's last-seen
time does not jump to the replay's time). What still fails stays as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters import CLASSES, REASONS, DecodeError
from ingest.batch import Batch
from ingest.dispatch import Dispatcher
from ingest.registry import RegistryCache
from ingest.writer import TRANSIENT, Writer

log = logging.getLogger(__name__)

# Every reason a dead letter can carry: the adapters' closed set and the two the
# worker adds itself (a device registered under another class; a decoder's bug).
ALL_REASONS: tuple[str, ...] = REASONS

_COLUMNS = (
    "id, received_at, topic, reason, detail, device_class, device_id, replayed_at, length(payload) AS size"
)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters; every field set narrows the choice."""

    reason: str | None = None
    device_class: str | None = None
    device_id: str | None = None
    topic_prefix: str | None = None
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    replayed: bool | None = None  # None: both
    ids: tuple[int, ...] = ()

    def where(self, args: list[Any]) -> str:
        """SQL conditions with their values appended to `args` ($n numbering follows)."""
        out = []

        def add(sql: str, value: Any) -> None:
            args.append(value)
            out.append(sql.replace("$?", f"${len(args)}"))

        if self.reason is not None:
            add("reason = $?", self.reason)
        if self.device_class is not None:
            add("device_class = $?", self.device_class)
        if self.device_id is not None:
            add("device_id = $?", self.device_id)
        if self.topic_prefix is not None:
            add("left(topic, length($?::text)) = $?", self.topic_prefix)
        if self.since is not None:
            add("received_at >= $?", self.since)
        if self.until is not None:
            add("received_at < $?", self.until)
        if self.replayed is not None:
            out.append("replayed_at IS NOT NULL" if self.replayed else "replayed_at IS NULL")
        if self.ids:
            add("id = ANY($?::bigint[])", list(self.ids))
        return " AND ".join(out) or "true"

    def as_dict(self) -> dict[str, Any]:
        """The filter as JSON-ready data (for the audit trail and reports)."""
        out: dict[str, Any] = {}
        for name in ("reason", "device_class", "device_id", "topic_prefix", "replayed"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.isoformat()
        if self.ids:
            out["ids"] = list(self.ids)
        return out


async def page(conn: Any, f: Filter, limit: int, before: int | None = None) -> tuple[list[Any], int | None]:
    """Newest first (by id: letters are stored as they arrive), the letters with an id
    below `before`; the id to pass for the next page, or None after the last."""
    args: list[Any] = []
    where = f.where(args)
    if before is not None:
        args.append(before)
        where += f" AND id < ${len(args)}"
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY id DESC LIMIT {int(limit) + 1}", *args
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


async def get(conn: Any, letter_id: int) -> Any:
    """One dead letter with its payload, or None."""
    return await conn.fetchrow(f"SELECT {_COLUMNS}, payload FROM dead_letters WHERE id = $1", letter_id)


async def latest_for_device(conn: Any, device_id: str) -> Any:
    """The device's latest refusal not since replayed, or None."""
    return await conn.fetchrow(
        "SELECT id, received_at, reason, detail FROM dead_letters WHERE device_id = $1 "
        "AND replayed_at IS NULL ORDER BY received_at DESC, id DESC LIMIT 1",
        device_id,
    )


async def counts(conn: Any, since: datetime) -> dict[str, int]:
    """Dead letters received since `since`, by reason."""
    rows = await conn.fetch(
        "SELECT reason, count(*) AS n FROM dead_letters WHERE received_at >= $1 GROUP BY reason", since
    )
    return {r["reason"]: r["n"] for r in rows}


async def prune(conn: Any, older_than: datetime) -> int:
    """Delete dead letters received before `older_than`; how many went."""
    status: str = await conn.execute("DELETE FROM dead_letters WHERE received_at < $1", older_than)
    return int(status.rsplit(" ", 1)[-1])


async def keep_pruning(pool: Any, retention: timedelta, interval_s: float) -> None:
    """The service's retention loop: one delete per interval."""
    while True:
        try:
            async with pool.acquire() as conn:
                n = await prune(conn, datetime.now(UTC) - retention)
            if n:
                log.info("retention: deleted %d dead letters older than %s", n, retention)
        except asyncio.CancelledError:
            raise
        except TRANSIENT as exc:  # the database is down: the next round tries again
            log.warning("retention: database not reachable (%s)", exc)
        await asyncio.sleep(interval_s)


@dataclass(slots=True)
class ReplayResult:
    examined: int = 0
    stored: list[int] = field(default_factory=list)  # ids of the letters now stored
    failing: Counter[str] = field(default_factory=Counter)  # by today's reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "stored": len(self.stored),
            "still_failing": dict(sorted(self.failing.items())),
        }


async def replay(
    conn: Any,
    dispatcher: Dispatcher,
    f: Filter,
    limit: int = 100_000,
    chunk: int = 1000,
    resolution: timedelta = timedelta(seconds=30),
) -> ReplayResult:
    """Replay the letters `f` chooses that were not replayed yet, oldest first, in
    transactions of `chunk` letters. Returns what happened to them."""
    writer = Writer(CLASSES)
    await writer.prepare(conn)
    registry = RegistryCache(resolution)
    result = ReplayResult()
    f = dataclasses.replace(f, replayed=False)
    after = 0
    while result.examined < limit:
        args: list[Any] = []
        where = f.where(args)
        args.append(after)
        rows = await conn.fetch(
            f"SELECT id, received_at, topic, payload FROM dead_letters WHERE {where} AND id > ${len(args)} "
            f"ORDER BY id LIMIT {min(chunk, limit - result.examined)}",
            *args,
        )
        if not rows:
            break
        after = rows[-1]["id"]
        result.examined += len(rows)
        batch = Batch(time.monotonic(), automated=registry.automated, classes=registry.classes)
        ids: dict[str, list[int]] = {}  # device -> the dead letters that now decode
        for row in rows:
            topic, payload = row["topic"], bytes(row["payload"])
            try:
                decoded = dispatcher.decode(topic, payload, row["received_at"])
                batch.add(decoded, row["received_at"], topic, payload)
            except DecodeError as exc:
                result.failing[exc.reason] += 1
                continue
            ids.setdefault(decoded.device_id, []).append(row["id"])
        if not ids:
            continue
        async with conn.transaction():
            # A device registered under another class still fails: its dead letters
            # stay as they are (no second one is written).
            for dev, _ in await writer.mismatched(conn, batch):
                batch.reject_device(dev, "")
                result.failing["class_mismatch"] += len(ids.pop(dev))
            batch.unverified.clear()
            batch.dead.clear()
            stored = [i for dev_ids in ids.values() for i in dev_ids]
            devices = registry.due(batch.devices)
            await writer.write(conn, batch, devices)
            await conn.execute(
                "UPDATE dead_letters SET replayed_at = now() WHERE id = ANY($1::bigint[])", stored
            )
        registry.committed(devices)
        result.stored.extend(stored)
    return result


def text_of(payload: bytes) -> str | None:
    """The payload as text where it is UTF-8, else None."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
