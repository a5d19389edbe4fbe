"""The latency benchmark's publisher: its messages are valid v1 documents stamped
with the time they are sent, and no (device, ts) repeats across its processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from adapters import ADAPTERS
from bench.live import LiveMessages
from ingest.dispatch import Dispatcher
from ingest.sources import mqtt_wire as wire


def test_live_messages_decode_stamped_now_and_never_repeat_a_key() -> None:
    d = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))
    parts = [LiveMessages(3000, part, 2, devices=200, variants=3) for part in range(2)]
    keys = set()
    classes = set()
    before = datetime.now(UTC)
    for m in parts:
        for i in range(len(m)):
            topic, payload = m[i]
            decoded = d.decode(topic, payload, datetime.now(UTC))
            assert before <= decoded.ts <= datetime.now(UTC)
            keys.add((decoded.device_id, decoded.ts))
            classes.add(decoded.device_class)
    assert len(keys) == 6000
    assert classes == {"reservoir", "power_line", "charger", "datacenter"}


def test_a_live_packet_is_the_publish_of_its_message() -> None:
    m = LiveMessages(50, 1, 2, devices=20, variants=2)
    for i in range(50):
        pid = 1 + i * 1000
        packet = m.packet(i, pid)
        parser = wire.Parser()
        (got,), _ = parser.feed(packet)
        topic, payload = m[i]
        assert got[0] == topic and got[2] == pid
        # the same document, stamped a moment later
        assert got[1][:8] == payload[:8] and len(got[1]) == len(payload)
        assert orjson.loads(got[1])["metrics"] == orjson.loads(payload)["metrics"]
