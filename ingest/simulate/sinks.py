"""Where simulated messages go: an MQTT broker (paho-mqtt 2.2, MQTT v5, QoS 1) or a
JSON-lines file. The only module of the simulator that opens a socket to a broker.

One connection carries the whole fleet (or one shard of it). MQTT allows one last
will per connection, so per-device wills cannot be registered: the simulation
publishes each device's retained `online` birth and, when a simulated device drops,
the `offline` that its broker-side will would have produced.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Protocol

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.simulate.model import Message

# paho's default window is 20 in-flight QoS 1 messages, which bounds a publisher to
# one window per round trip (LIMITS.md); a wide window keeps the pipe full.
DEFAULT_MAX_INFLIGHT = 2000
BAD_PROPERTY = "gz-sim-bad"  # MQTT v5 user property naming a deliberately bad message


class SinkError(Exception):
    """The sink cannot take messages (no broker, connection refused, ...)."""


class Sink(Protocol):
    @property
    def acked(self) -> int: ...

    @property
    def errors(self) -> int: ...

    def send(self, msg: Message) -> None: ...

    def close(self, timeout: float) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "gz-simulator"
    qos: int = 1
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    keepalive: int = 60
    username: str | None = None
    password: str | None = None
    connect_timeout: float = 10.0
    # 5, or 4 for MQTT 3.1.1 (RabbitMQ 3.10's MQTT listener, the durable transport);
    # 3.1.1 has no user properties, so bad messages go unmarked
    mqtt_version: int = 5


class FileSink:
    """JSON lines: {"topic", "payload", "ts", "retain"?, "bad"?} per message."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._sent = 0

    @property
    def acked(self) -> int:
        return self._sent

    @property
    def errors(self) -> int:
        return 0

    def send(self, msg: Message) -> None:
        self._stream.write(orjson.dumps(msg.to_record(), option=orjson.OPT_APPEND_NEWLINE))
        self._sent += 1

    def close(self, timeout: float) -> None:
        self._stream.flush()


class MqttSink:
    """Publishes over one MQTT v5 connection with at most `max_inflight` messages
    unacknowledged: the window is both the throughput knob and the back-pressure."""

    def __init__(self, opts: BrokerOptions) -> None:
        self.opts = opts
        self.window = max(opts.max_inflight, 1)
        self._sent = 0
        self._acked = 0
        self._errors = 0
        self._connected = threading.Event()
        self._refused: str | None = None
        self._bad_props: dict[str, Properties] = {}
        v5 = opts.mqtt_version == 5
        self._v5 = v5
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=opts.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else True)
        # The window is ours, not paho's: paho 2.2 rescans every outstanding message on
        # each PUBACK when it limits in-flight messages itself (O(window) per ack, ~1k
        # msgs/s with a window of 2,000); with its limit off it sends at once.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        if opts.username is not None:
            client.username_pw_set(opts.username, opts.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        try:
            if v5:
                client.connect(opts.host, opts.port, opts.keepalive, clean_start=True)
            else:
                client.connect(opts.host, opts.port, opts.keepalive)
        except OSError as exc:
            raise SinkError(f"cannot reach the MQTT broker at {opts.host}:{opts.port}: {exc}") from exc
        client.loop_start()
        if not self._connected.wait(opts.connect_timeout) or self._refused:
            client.loop_stop()
            why = self._refused or f"no CONNACK within {opts.connect_timeout:g} s"
            raise SinkError(f"MQTT broker at {opts.host}:{opts.port} refused the connection: {why}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if reason.is_failure:
            self._errors += 1

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        self._acked += 1
        if reason.is_failure:
            self._errors += 1

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def errors(self) -> int:
        return self._errors

    def _props(self, kind: str) -> Properties:
        props = self._bad_props.get(kind)
        if props is None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = (BAD_PROPERTY, kind)
            self._bad_props[kind] = props
        return props

    def send(self, msg: Message) -> None:
        if self._sent - self._acked >= self.window:
            while self._sent - self._acked >= self.window:
                time.sleep(0.0002)
        props = self._props(msg.bad) if msg.bad and self._v5 else None
        info = self._client.publish(msg.topic, msg.payload, self.opts.qos, msg.retain, props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            self._errors += 1  # NO_CONN: paho keeps it and sends it after reconnecting
        self._sent += 1

    def close(self, timeout: float) -> None:
        """Wait up to `timeout` s for outstanding acknowledgements, then disconnect."""
        deadline = time.monotonic() + timeout
        while self._acked < self._sent and time.monotonic() < deadline:
            time.sleep(0.005)
        self._client.disconnect()
        self._client.loop_stop()
