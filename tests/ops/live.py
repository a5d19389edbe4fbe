"""The real Service fed by the ops fleet, for the dashboard and rule tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from ingest import config
from ingest.service import Service
from tests.mqttclient import publish
from tests.ops.fleet import ops_fleet
from tests.services import Broker


@contextlib.asynccontextmanager
async def fed_service(broker: Broker, db_url: str) -> AsyncIterator[Service]:
    cfg = config.load(
        env={
            "INGEST_MQTT_URL": broker.url,
            "INGEST_DATABASE_URL": db_url,
            "INGEST_MQTT_CLIENT_ID": "ops-worker",
            "INGEST_HTTP_PORT": "0",
            "INGEST_BATCH_MAX_AGE_MS": "50",
        }
    )
    svc = Service(cfg)
    task = asyncio.create_task(svc.run())
    ready = asyncio.create_task(svc.ready.wait())
    await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()
    try:
        await asyncio.wait_for(svc.source.wait_subscribed(), 10)
        msgs = ops_fleet(datetime.now(UTC))
        await asyncio.to_thread(publish, broker.port, msgs)
        await asyncio.wait_for(svc.pipeline.wait_committed(len(msgs)), 20)
        # The rollup ran at start on an empty database; roll the fleet up now rather
        # than waiting for its next round.
        await svc.rollup.run_once(svc.pool)
        yield svc
    finally:
        svc.stop()
        await asyncio.wait_for(task, 30)
