"""The command line's way to the database: one connection per command, and a failure
to connect told as one line naming host, port and database (never a traceback)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from ingest.config import DatabaseConfig

T = TypeVar("T")


class CliError(Exception):
    """A failure told to the person at the terminal as one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def where(url: str) -> str:
    """`host:port/database` of a database URL, without the user or password."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/") or (parts.username or "postgres")
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{database}"


def connect_error(url: str, exc: BaseException) -> str:
    """One line for a failed connection, naming what was tried and why it failed."""
    reason = str(exc).strip() or exc.__class__.__name__
    hint = ""
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        hint = " (create it, or point INGEST_DATABASE_URL at another one)"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        hint = " (the server's TLS certificate: check sslrootcert and sslmode in INGEST_DATABASE_URL)"
    elif isinstance(exc, OSError | TimeoutError):
        hint = " (is PostgreSQL running there? INGEST_DATABASE_URL sets where)"
    return f"cannot connect to the database at {where(url)}: {reason}{hint}"


async def connect(db: DatabaseConfig) -> Any:
    try:
        return await asyncpg.connect(db.url, timeout=db.connect_timeout_s)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CliError(connect_error(db.url, exc)) from None


def run(db: DatabaseConfig, work: Callable[[Any], Awaitable[T]]) -> T:
    """Connect, run `work(conn)`, close; connection failures become CliError."""

    async def go() -> T:
        conn = await connect(db)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        raise CliError(f"lost the database at {where(db.url)}: {exc}") from None
    except asyncpg.UndefinedTableError as exc:
        migrate = "run ingest migrate"
        raise CliError(f"the database at {where(db.url)} is not migrated ({exc}): {migrate}") from None
