"""Fixtures: a fresh PostgreSQL database and a private Mosquitto per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.services import Broker, broker, create_database, drop_database


@pytest.fixture
async def db_url() -> AsyncIterator[str]:
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def mqtt_broker() -> Iterator[Broker]:
    with broker() as b:
        yield b
