"""The MQTT source against a real Mosquitto: acknowledgements sent just before a clean
stop reach the broker (nothing is delivered again), and what is not acknowledged is."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.config import MqttConfig
from ingest.metrics import ServiceMetrics
from ingest.sources.mqtt import MqttSource
from tests.fleet import known_fleet
from tests.mqttclient import publish
from tests.services import Broker

FILTER = "$share/ingest/gz/v1/+/+/+"


def session(port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """mosquitto_sub as the worker's persistent session (client id w1)."""
    return subprocess.run(
        [
            "mosquitto_sub",
            "-p",
            str(port),
            "-V",
            "mqttv5",
            "-c",
            "-i",
            "w1",
            "-x",
            "3600",
            "-q",
            "1",
            "-t",
            FILTER,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


class Recorder:
    """An intake that records what the source hands over."""

    def __init__(self, n: int) -> None:
        self.got: list[tuple[Any, int]] = []
        self.n = n
        self.all_in = asyncio.Event()

    def on_messages(self, source: Any, epoch: Any, messages: Any) -> None:
        self.got.extend((epoch, pid) for _, _, pid in messages)
        if len(self.got) >= self.n:
            self.all_in.set()

    def on_rejected(self, *args: Any) -> None:
        raise AssertionError("the MQTT source refuses nothing itself")


async def drain(port: int, n: int, ack: bool) -> None:
    rec = Recorder(n)
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{port}", client_id="w1")
    src = MqttSource(cfg, rec, ServiceMetrics())
    task = asyncio.create_task(src.run())
    await asyncio.wait_for(rec.all_in.wait(), 30)
    if ack:
        for epoch, pid in rec.got:
            src.ack(epoch, [pid])
    await src.close()  # at once: the acknowledgements are still on their way
    await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("ack", [True, False])
async def test_clean_stop_after_acks_leaves_nothing_to_redeliver(mqtt_broker: Broker, ack: bool) -> None:
    msgs, _ = known_fleet(datetime.now(UTC), rounds=300)  # 2,700 messages
    await asyncio.to_thread(session, mqtt_broker.port, "-E")
    await asyncio.to_thread(publish, mqtt_broker.port, msgs)
    await drain(mqtt_broker.port, len(msgs), ack)
    left = await asyncio.to_thread(session, mqtt_broker.port, "-W", "2", "-F", "%t")
    redelivered = len(left.stdout.splitlines())
    assert redelivered == (0 if ack else len(msgs))
