"""Fixtures: a fresh PostgreSQL database and a private Mosquitto per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import settings

from tests.services import Broker, broker, create_database, drop_database

# No per-example deadline: on a shared 2-core machine one example can take longer than
# hypothesis's 200 ms for reasons that are not the code's (a flaky failure seen in CI).
settings.register_profile("project", deadline=None)
settings.load_profile("project")


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
