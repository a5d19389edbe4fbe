"""A running service with the known fleet provisioned, fed and rolled up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from ingest.service import Service
from tests.indicators.plant import ADMIN, PROVISION_CSV, fleet_messages, make_cfg
from tests.mqttclient import publish
from tests.services import Broker, running


@pytest.fixture
async def fed(mqtt_broker: Broker, db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Service, str]]:
    async with running(make_cfg(mqtt_broker, db_url, tmp_path)) as svc:
        base = f"http://127.0.0.1:{svc.http_port}"
        async with aiohttp.ClientSession() as http:
            r = await http.post(f"{base}/api/v1/devices", data=PROVISION_CSV.encode(),
                                headers={**ADMIN, "Content-Type": "text/csv"})  # fmt: skip
            assert r.status == 200
        msgs = fleet_messages(datetime.now(UTC))
        await asyncio.to_thread(publish, mqtt_broker.port, msgs)
        await asyncio.wait_for(svc.pipeline.wait_committed(len(msgs)), 20)
        await svc.rollup.run_once(svc.pool)
        yield svc, base
