"""Versioned SQL migrations: `sql/NNN_name.sql`, then `NNN_name.timescale.sql` when
the database uses TimescaleDB, else `NNN_name.plain.sql`.

Applied in order, each in one transaction, recorded in `schema_migrations`, under an
advisory lock so that workers starting together do not race. Re-running is a no-op.

The variant (plain or timescale) belongs to the database, not to the run: the first
migration records it and every later one follows it, whatever is installed since.
A plain database becomes a TimescaleDB one only by `ingest migrate --to-timescale`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x1E57_0001  # advisory lock id of the migrator
PLAIN, TIMESCALE = "plain", "timescale"

PRELOAD_HINT = (
    "the TimescaleDB extension is installed on the server but not preloaded, and "
    "PostgreSQL refuses to load it otherwise: add it to shared_preload_libraries in "
    "postgresql.conf (shared_preload_libraries = 'timescaledb', keeping any libraries "
    "already listed) and restart PostgreSQL"
)


# Checksums a published migration had before a rewrite that makes the same schema,
# by (version, variant). A database that recorded one of them takes the new
# checksum without the "changed after it was applied" warning.
REWRITTEN: dict[tuple[int, str], frozenset[str]] = {
    # 001 generated from the class declarations, its unique indexes and compression
    # settings guarded so that every statement re-runs on a compressed hypertable.
    (1, PLAIN): frozenset({"c146361339a859e20fe3112647910f850c57c8a79dcb1444d8d307ce71411d94"}),
    (1, TIMESCALE): frozenset({"da3244741d5ebc87c1c6d86301cab6a75bf6ad65f8b9f58a15fb3f32a7015e92"}),
}


class MigrationError(RuntimeError):
    """The migrations cannot run as asked; the message says why and what to do."""


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


@dataclass(frozen=True, slots=True)
class Server:
    """What the database server offers for TimescaleDB."""

    available: bool  # the extension is installed on the server (pg_available_extensions)
    preloaded: bool  # ... and named in shared_preload_libraries


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


def preloaded(setting: str) -> bool:
    """Whether a shared_preload_libraries value names TimescaleDB's loader."""
    names = (part.strip().strip('"').rsplit("/", 1)[-1] for part in setting.split(","))
    return "timescaledb" in names


async def server(conn: Any) -> Server:
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS available, "
        "current_setting('shared_preload_libraries') AS preload"
    )
    return Server(bool(row["available"]), preloaded(row["preload"] or ""))


def choose_variant(recorded: str | None, requested: str | None, srv: Server) -> str:
    """The variant to apply. A database keeps the one it recorded; a new database
    takes `requested`, or TimescaleDB when the server has it."""
    if recorded is not None:
        if requested is not None and requested != recorded:
            if recorded == PLAIN:
                raise MigrationError(
                    "this database was migrated for plain PostgreSQL; its later migrations stay "
                    "plain. To convert it (hypertables with their data, continuous aggregates "
                    "in place of the views, policies) run `ingest migrate --to-timescale`"
                )
            raise MigrationError(
                "this database was migrated for TimescaleDB; it cannot be migrated as plain PostgreSQL"
            )
        variant = recorded
    elif requested is not None:
        variant = requested
    else:
        variant = TIMESCALE if srv.available else PLAIN
    if variant == TIMESCALE:
        if not srv.available:
            raise MigrationError("TimescaleDB was asked for, but the server does not have the extension")
        if not srv.preloaded:
            raise MigrationError(PRELOAD_HINT)
    return variant


_VIEW = re.compile(r"^CREATE OR REPLACE VIEW (\w+)", re.M)
_HYPERTABLE = re.compile(r"(create_hypertable\('\w+', 'ts'[^;]*?if_not_exists => TRUE)\)")


def conversion_sql(applied: list[Migration]) -> str:
    """The SQL that makes a plain database one migrated for TimescaleDB with the
    `applied` migrations: drop the plain views (their continuous aggregates take the
    names), then every migration's TimescaleDB part, in order, its hypertables made
    with their rows (`migrate_data`). Each part is safe to re-run, and 004's records
    every hypertable's history as late, so the refresh job fills the aggregates that
    were created empty (refresh_continuous_aggregate cannot run in a transaction)."""
    views = [v for m in applied for v in _VIEW.findall(m.plain)]
    parts = ["-- ingest migrate --to-timescale: plain PostgreSQL to TimescaleDB, in one transaction"]
    parts += [f"DROP VIEW IF EXISTS {v};" for v in reversed(views)]
    for m in applied:
        with_data = _HYPERTABLE.sub(
            lambda h: h[0] if "migrate_data" in h[0] else f"{h[1]}, migrate_data => TRUE)", m.timescale
        )
        parts.append(f"-- migration {m.version:03d}_{m.name}, TimescaleDB part\n{with_data}")
    return "\n".join(parts)


async def to_timescale(conn: Any, shipped: list[Migration] | None = None) -> list[str]:
    """Convert a plain database to TimescaleDB (`ingest migrate --to-timescale`), then
    apply what is pending; returns the names converted and applied."""
    shipped = migrations() if shipped is None else shipped
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        recorded = await recorded_variant(conn)
        if recorded != PLAIN:
            raise MigrationError(
                "nothing to convert: the database is already TimescaleDB"
                if recorded == TIMESCALE
                else "nothing to convert: the database has no migrations yet (ingest migrate "
                "makes a new one TimescaleDB when the server has the extension)"
            )
        choose_variant(None, TIMESCALE, await server(conn))  # installed and preloaded
        versions = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = [m for m in shipped if m.version in versions]
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        async with _transaction(conn):
            await conn.execute(conversion_sql(applied))
            for m in applied:
                await conn.execute(
                    "UPDATE schema_migrations SET variant = $2, checksum = $3 WHERE version = $1",
                    m.version,
                    TIMESCALE,
                    m.checksum(True),
                )
        log.info("converted to TimescaleDB: %s", ", ".join(f"{m.version:03d}_{m.name}" for m in applied))
        converted = [f"{m.version:03d}_{m.name} (converted)" for m in applied]
        return converted + await _apply(conn, None, shipped)
    finally:
        if not conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def recorded_variant(conn: Any) -> str | None:
    """The variant a database was migrated with, or None before its first migration."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return None
    variants = {r["variant"] for r in await conn.fetch("SELECT DISTINCT variant FROM schema_migrations")}
    if len(variants) > 1:
        raise MigrationError(f"schema_migrations records both variants {sorted(variants)}; fix it by hand")
    return variants.pop() if variants else None


@contextlib.asynccontextmanager
async def _transaction(conn: Any) -> AsyncIterator[None]:
    """A transaction whose rollback never replaces the error that caused it (asyncpg's
    own raises "connection is closed" when that error ended the session)."""
    tr = conn.transaction()
    await tr.start()
    try:
        yield
    except BaseException:
        if not conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await tr.rollback()
        raise
    await tr.commit()


async def migrate(
    conn: Any, use_timescale: bool | None = None, shipped: list[Migration] | None = None
) -> list[str]:
    """Apply pending migrations (`shipped`, default the package's); returns the names
    applied. `use_timescale=None` keeps the database's variant, or detects it for a
    new database."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        done = await _apply(conn, use_timescale, migrations() if shipped is None else shipped)
    except BaseException:
        # The lock goes with the session; unlocking a broken connection would only
        # replace the error that broke it.
        if not conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        raise
    await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return done


async def _apply(conn: Any, use_timescale: bool | None, shipped: list[Migration]) -> list[str]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               variant    text NOT NULL CHECK (variant IN ('plain', 'timescale')),
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    requested = None if use_timescale is None else (TIMESCALE if use_timescale else PLAIN)
    recorded = await recorded_variant(conn)
    variant = choose_variant(recorded, requested, await server(conn))
    ts = variant == TIMESCALE
    log.info("database variant: %s%s", variant, "" if recorded else " (new database)")
    if ts:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    applied = {r["version"]: r for r in await conn.fetch("SELECT * FROM schema_migrations")}
    done = []
    for m in shipped:
        row = applied.get(m.version)
        if row is not None:
            if row["checksum"] in REWRITTEN.get((m.version, variant), ()):
                await conn.execute(
                    "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", m.version, m.checksum(ts)
                )
                log.info("migration %03d_%s: recorded the checksum of its rewritten text", m.version, m.name)
            elif row["checksum"] != m.checksum(ts):
                log.warning(
                    "migration %03d_%s changed after it was applied: a published "
                    "migration must not be edited; add a new one",
                    m.version,
                    m.name,
                )
            continue
        async with _transaction(conn):
            await conn.execute(m.sql(ts))
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, variant, checksum) VALUES ($1, $2, $3, $4)",
                m.version,
                m.name,
                variant,
                m.checksum(ts),
            )
        log.info("applied migration %03d_%s (%s)", m.version, m.name, variant)
        done.append(f"{m.version:03d}_{m.name}")
    return done
