"""Versioned SQL migrations: `sql/NNN_name.sql`, then `NNN_name.timescale.sql` when
the TimescaleDB extension is available, else `NNN_name.plain.sql`.

Applied in order, each in one transaction, recorded in `schema_migrations`, under an
advisory lock so that workers starting together do not race. Re-running is a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x1E57_0001  # advisory lock id of the migrator


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    common: str
    plain: str
    timescale: str

    def sql(self, timescale: bool) -> str:
        return self.common + "\n" + (self.timescale if timescale else self.plain)

    def checksum(self, timescale: bool) -> str:
        return hashlib.sha256(self.sql(timescale).encode()).hexdigest()


def migrations() -> list[Migration]:
    """The migrations shipped in the package, in order."""
    folder = resources.files("ingest") / "sql"
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        stem = entry.name[: -len(".sql")]

        def read(suffix: str, stem: str = stem) -> str:
            f = folder / f"{stem}.{suffix}.sql"
            return f.read_text(encoding="utf-8") if f.is_file() else ""

        found.append(
            Migration(int(m[1]), m[2], entry.read_text(encoding="utf-8"), read("plain"), read("timescale"))
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {versions}")
    return found


def render(timescale: bool) -> str:
    """All migrations as one SQL text, for inspection (`ingest migrate --print-sql`)."""
    parts = []
    for m in migrations():
        parts.append(f"-- migration {m.version:03d}_{m.name}\n{m.sql(timescale)}")
    return "\n".join(parts)


async def timescale_available(conn: Any) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        )
    )


async def migrate(conn: Any, use_timescale: bool | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied. `use_timescale=None` detects."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   variant    text NOT NULL CHECK (variant IN ('plain', 'timescale')),
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        if use_timescale is None:
            use_timescale = await timescale_available(conn)
        if use_timescale:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        applied = {r["version"]: r for r in await conn.fetch("SELECT * FROM schema_migrations")}
        done = []
        for m in migrations():
            row = applied.get(m.version)
            if row is not None:
                ts = row["variant"] == "timescale"
                if row["checksum"] != m.checksum(ts):
                    log.warning(
                        "migration %03d_%s changed after it was applied: a published "
                        "migration must not be edited; add a new one",
                        m.version,
                        m.name,
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql(use_timescale))
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant, checksum) "
                    "VALUES ($1, $2, $3, $4)",
                    m.version,
                    m.name,
                    "timescale" if use_timescale else "plain",
                    m.checksum(use_timescale),
                )
            log.info(
                "applied migration %03d_%s (%s)", m.version, m.name, "timescale" if use_timescale else "plain"
            )
            done.append(f"{m.version:03d}_{m.name}")
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
