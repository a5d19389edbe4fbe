"""A plain device-side publisher for tests (paho, its own network thread)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import paho.mqtt.client as paho


def publish(
    port: int,
    messages: Iterable[tuple[str, bytes | str]],
    qos: int = 1,
    protocol: int = paho.MQTTv5,
    retain: bool = False,
    client_id: str = "",
) -> int:
    """Publish and wait until the broker has acknowledged every message."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("publisher could not connect")
        infos = [c.publish(t, p, qos=qos, retain=retain) for t, p in messages]
        for info in infos:
            info.wait_for_publish(30)
        return len(infos)
    finally:
        c.disconnect()
        c.loop_stop()
