"""Real services for tests: a private Mosquitto on a free loopback port with its own
configuration (ingest.localservices), and a fresh PostgreSQL database created and
dropped per test on the machine's server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ingest.config import Config
from ingest.localservices import (
    BROKER_CONF,
    Broker,
    PrivatePostgres,
    broker,
    free_port,
    private_postgres,
)
from ingest.service import Service

__all__ = [
    "BROKER_CONF",
    "PG_ADMIN",
    "Broker",
    "PrivatePostgres",
    "broker",
    "create_database",
    "drop_database",
    "free_port",
    "private_postgres",
    "running",
]

PG_ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def create_database() -> str:
    name = f"ingest_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_db(PG_ADMIN, name)


async def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[Service]:
    """The real service in this event loop, started and subscribed; stopped after."""
    svc = Service(cfg)
    task = asyncio.create_task(svc.run())
    ready = asyncio.create_task(svc.ready.wait())
    await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the service failed to start: show why
    await asyncio.wait_for(svc.source.wait_subscribed(), 10)
    try:
        yield svc
    finally:
        svc.stop()
        await asyncio.wait_for(task, 30)
