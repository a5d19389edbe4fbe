"""The pipeline end to end against the real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import paho.mqtt.client as paho
import pytest

from ingest import config
from ingest.service import Service
from tests.fleet import bad_messages, known_fleet
from tests.mqttclient import publish
from tests.services import Broker, running

TABLES = (
    "readings_reservoir",
    "readings_power_line",
    "readings_charger",
    "readings_datacenter",
    "state_events",
)


def make_cfg(broker: Broker, db_url: str, **batch: Any) -> config.Config:
    return config.load(
        env={
            "INGEST_MQTT_URL": broker.url,
            "INGEST_DATABASE_URL": db_url,
            "INGEST_MQTT_CLIENT_ID": "test-worker",
            "INGEST_HTTP_PORT": "0",
            "INGEST_BATCH_MAX_AGE_MS": "50",
            **{f"INGEST_BATCH_{k.upper()}": str(v) for k, v in batch.items()},
        }
    )


@pytest.fixture
async def service(mqtt_broker: Broker, db_url: str) -> AsyncIterator[Service]:
    async with running(make_cfg(mqtt_broker, db_url)) as svc:
        yield svc


async def counts(db_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(db_url)
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
    finally:
        await conn.close()


async def test_known_fleet_lands_exactly(service: Service, mqtt_broker: Broker, db_url: str) -> None:
    now = datetime.now(UTC)
    good, expected = known_fleet(now)
    bad = bad_messages(now)
    msgs = good + [(t, p) for t, p, _ in bad]
    await asyncio.to_thread(publish, mqtt_broker.port, msgs)
    await asyncio.wait_for(service.pipeline.wait_committed(len(msgs)), 20)

    assert await counts(db_url) == expected
    conn = await asyncpg.connect(db_url)
    try:
        devices = {r["device_id"]: r for r in await conn.fetch("SELECT * FROM devices")}
        assert set(devices) == {"res-0", "res-1", "res-2", "pl-0", "pl-1", "ch-0", "dc-0"}
        assert devices["res-1"]["class"] == "reservoir"
        assert devices["res-1"]["region"] == "520500"
        assert devices["dc-0"]["region"] == "guian"
        assert devices["res-1"]["first_seen"] <= devices["res-1"]["last_seen"]
        row = await conn.fetchrow(
            "SELECT level_m, seepage_pressure_m FROM readings_reservoir "
            "WHERE device_id = 'res-1' AND point = '' ORDER BY ts DESC LIMIT 1"
        )
        assert row["level_m"] == pytest.approx(1051.02)
        assert row["seepage_pressure_m"] is None
        p1 = await conn.fetchval(
            "SELECT seepage_pressure_m FROM readings_reservoir "
            "WHERE device_id = 'res-1' AND point = 'P1' ORDER BY ts DESC LIMIT 1"
        )
        assert p1 == 14.0
        dead = await conn.fetch("SELECT topic, payload, reason, detail FROM dead_letters")
        assert sorted(r["reason"] for r in dead) == sorted(r for _, _, r in bad)
        assert {bytes(r["payload"]) for r in dead} == {p for _, p, _ in bad}
        assert all(r["detail"] for r in dead)
    finally:
        await conn.close()
    m = service.metrics.registry
    assert m.get_sample_value("ingest_messages_total", {"class": "reservoir", "outcome": "accepted"}) == 9
    assert m.get_sample_value("ingest_dead_letters_total", {"reason": "bad_json"}) == 1


async def test_republished_messages_are_stored_once(
    service: Service, mqtt_broker: Broker, db_url: str
) -> None:
    """The same messages again (as after a redelivery): readings and dead letters once."""
    now = datetime.now(UTC)
    good, expected = known_fleet(now)
    msgs = good + [(t, p) for t, p, _ in bad_messages(now)]
    await asyncio.to_thread(publish, mqtt_broker.port, msgs)
    await asyncio.wait_for(service.pipeline.wait_committed(len(msgs)), 20)
    await asyncio.to_thread(publish, mqtt_broker.port, msgs)
    await asyncio.wait_for(service.pipeline.wait_committed(2 * len(msgs)), 20)
    assert await counts(db_url) == expected
    conn = await asyncpg.connect(db_url)
    try:
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
    finally:
        await conn.close()
    assert dead == len({(t, p) for t, p in msgs[len(good) :]})
    m = service.metrics.registry
    assert m.get_sample_value("ingest_dedup_batches_total") >= 1
    # The counter counts every refusal; the table keeps each distinct one.
    assert m.get_sample_value("ingest_dead_letters_total", {"reason": "bad_json"}) == 2


async def test_mqtt_311_device_and_status(service: Service, mqtt_broker: Broker, db_url: str) -> None:
    good, _ = known_fleet(datetime.now(UTC), rounds=1)
    msgs = [*good[:1], ("gz/v1/reservoir/res-0/status", b"offline")]
    await asyncio.to_thread(publish, mqtt_broker.port, msgs, 1, paho.MQTTv311)
    await asyncio.wait_for(service.pipeline.wait_committed(2), 20)
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow("SELECT status, last_ts FROM devices WHERE device_id = 'res-0'")
    finally:
        await conn.close()
    assert row["status"] == "offline"
    assert row["last_ts"] is not None
