"""Nothing vanishes: the worker subscribes to everything under the prefix, so a topic
of the wrong depth or with a bad device id reaches it and becomes a dead letter with
its reason, counted on /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest

from ingest import topics
from tests.indicators.plant import make_cfg
from tests.mqttclient import publish
from tests.services import Broker, running

BODY = orjson.dumps({"ts": datetime.now(UTC).isoformat(), "metrics": {"power_w": 7000.0}})


def test_subscription_takes_everything_under_the_prefix() -> None:
    assert topics.subscription("gz", None) == "gz/#"
    assert topics.subscription("gz", "ingest") == "$share/ingest/gz/#"


@pytest.mark.parametrize("good", ["cp-1", "CP-520100-0007", "0052010001", "dc.guian:01", "a" * 64])
def test_device_ids_allowed(good: str) -> None:
    assert topics.valid_device_id(good)


@pytest.mark.parametrize("bad", ["", "a" * 65, "cp 1", "<script>", "'x'", "-lead", "设备1", "a\tb"])
def test_device_ids_refused(bad: str) -> None:
    assert not topics.valid_device_id(bad)


async def test_wrong_depth_and_bad_ids_are_dead_letters(
    mqtt_broker: Broker, db_url: str, tmp_path: Path
) -> None:
    sent = [
        ("gz/v1/charger/cp-1", BODY),  # the channel level missing
        ("gz/v1/charger/cp-1/telemetry/x", BODY),  # one level too many
        ("gz/v2/charger/cp-1/telemetry", BODY),
        ("gz/v1/charger/<script>/telemetry", BODY),
        ("gz/v1/charger/cp-1/telemetry", BODY),  # good
    ]
    async with running(make_cfg(mqtt_broker, db_url, tmp_path)) as svc:
        await asyncio.to_thread(publish, mqtt_broker.port, sent)
        await asyncio.wait_for(svc.pipeline.wait_committed(len(sent)), 20)
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch("SELECT topic, reason, detail FROM dead_letters ORDER BY id")
            stored = await conn.fetchval("SELECT count(*) FROM readings_charger")
        finally:
            await conn.close()
        m = svc.metrics.registry
        counted = {
            r: m.get_sample_value("ingest_dead_letters_total", {"reason": r})
            for r in ("bad_topic", "bad_device_id")
        }
    assert stored == 1
    by_topic = {r["topic"]: (r["reason"], r["detail"]) for r in rows}
    assert by_topic["gz/v1/charger/cp-1"][0] == "bad_topic"
    assert "4 levels, expected 5" in by_topic["gz/v1/charger/cp-1"][1]
    assert by_topic["gz/v1/charger/cp-1/telemetry/x"][0] == "bad_topic"
    assert by_topic["gz/v2/charger/cp-1/telemetry"][0] == "bad_topic"
    assert by_topic["gz/v1/charger/<script>/telemetry"][0] == "bad_device_id"
    assert counted == {"bad_topic": 3, "bad_device_id": 1}
