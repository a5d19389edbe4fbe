"""Maximum Packet Size against a real Mosquitto: the worker receives every packet up to
`mqtt.max_packet_size` bytes, and the broker discards bigger ones for it, as MQTT 5
requires, instead of sending what the worker would have to refuse (a redelivery loop:
Mosquitto 2.0 counts one byte less than the standard, which the source allows for)."""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.config import MqttConfig
from ingest.metrics import ServiceMetrics
from ingest.sources import mqtt_wire as wire
from ingest.sources.mqtt import MqttSource
from tests.mqttclient import publish
from tests.services import Broker

TOPIC = "gz/v1/reservoir/r1/telemetry"
LIMIT = 2048


class Acking:
    """An intake that acknowledges at once and records packet sizes as sent."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.last = asyncio.Event()

    def on_messages(self, source: Any, epoch: Any, messages: list[wire.Message]) -> None:
        for topic, payload, pid in messages:
            self.sizes.append(len(wire.publish(topic, payload, pid)))
            source.ack(epoch, [pid])
            if payload == b"last":
                self.last.set()

    def on_rejected(self, *args: Any) -> None:
        raise AssertionError("the MQTT source refuses nothing itself")


def payload_for(total: int) -> bytes:
    """A payload whose QoS 1 PUBLISH on TOPIC is `total` bytes long."""
    n = total - len(wire.publish(TOPIC, b"", 1))
    while len(wire.publish(TOPIC, b"x" * n, 1)) > total:
        n -= 1
    assert len(wire.publish(TOPIC, b"x" * n, 1)) == total
    return b"x" * n


async def test_packets_over_the_limit_are_discarded_by_the_broker(mqtt_broker: Broker) -> None:
    intake = Acking()
    cfg = MqttConfig(url=mqtt_broker.url, client_id="w1", max_packet_size=LIMIT)
    src = MqttSource(cfg, intake, ServiceMetrics())
    task = asyncio.create_task(src.run())
    try:
        await asyncio.wait_for(src.wait_subscribed(), 10)
        sizes = [LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2, 100_000]
        messages = [(TOPIC, payload_for(n)) for n in sizes] + [(TOPIC, b"last")]
        await asyncio.to_thread(publish, mqtt_broker.port, messages)
        # One publisher's QoS 1 messages arrive in order: once the last one is in,
        # the bigger ones were discarded, not delayed.
        await asyncio.wait_for(intake.last.wait(), 20)
        assert intake.sizes == [LIMIT - 1, LIMIT, len(wire.publish(TOPIC, b"last", 1))]
        assert src.connected  # no protocol error, no reconnect
        assert mqtt_broker.log().count("Dropping too large outgoing PUBLISH for w1") == 3
    finally:
        await src.close()
        await asyncio.wait_for(task, 10)
