"""MQTT source: paho-mqtt driven by the asyncio loop, MQTT v5, QoS 1, manual ack.

Owns the connection only: it calls the sink with (topic, payload, token) and sends
PUBACK when the pipeline hands tokens back after the commit. A persistent session
(fixed client id, session expiry, clean_start false) keeps messages published while
the worker is down; a shared subscription splits the load between workers; Receive
Maximum sets the in-flight window, which must exceed a batch. Reconnects with
backoff. A token is (connection generation, packet id): acknowledgements for a
connection that is gone are dropped — the broker redelivers those messages, and
the writer's idempotent path stores them once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import topics
from ingest.config import MqttConfig
from ingest.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Sink = Callable[[str, bytes, Any], None]


class MqttSource:
    def __init__(self, cfg: MqttConfig, sink: Sink, metrics: ServiceMetrics) -> None:
        self.cfg = cfg
        self._sink = sink
        self._metrics = metrics
        self._generation = 0
        self._paused = False
        self._stopping = False
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self.session_present: bool | None = None
        self.filter = topics.subscription(cfg.prefix, cfg.group)
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            c.tls_set()
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        self._client = c

    # ---- socket plumbing: paho's loop_read/loop_write driven by the event loop ----

    def _threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self._threadsafe(self._attach, sock)

    def _attach(self, sock: Any) -> None:
        self._sock = sock
        if not self._paused:
            self._add_reader()

    def _add_reader(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock, self._client.loop_read)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        self._sock = None

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self._threadsafe(self._add_writer, sock)

    def _add_writer(self, sock: Any) -> None:
        current = self._sock
        if self._loop is not None and current is not None and sock is current:
            self._loop.add_writer(current, self._client.loop_write)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_writer(sock)

    # ---- protocol events ----

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        self._generation += 1
        self.session_present = bool(flags.session_present)
        self._metrics.mqtt_connected.set(1)
        self._metrics.mqtt_reconnects.inc()
        log.info(
            "connected to mqtt://%s:%d as %s (session %s); subscribing to %s",
            self.cfg.host,
            self.cfg.port,
            self.cfg.client_id,
            "resumed" if flags.session_present else "new",
            self.filter,
        )
        client.subscribe(self.filter, options=SubscribeOptions(qos=1))
        self._disconnected.clear()
        self._connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        for r in reasons:
            if r.is_failure:
                log.error("subscription to %s refused: %s", self.filter, r)
                return
        self._subscribed.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._metrics.mqtt_connected.set(0)
        self._connected.clear()
        self._subscribed.clear()
        self._disconnected.set()
        if not self._stopping:
            log.warning("MQTT connection lost: %s", reason)

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._sink(msg.topic, bytes(msg.payload), (self._generation, msg.mid, msg.qos))

    # ---- what the pipeline calls ----

    def ack(self, tokens: list[Any]) -> None:
        gen = self._generation
        if not self._connected.is_set():
            return
        client = self._client
        for g, mid, qos in tokens:
            if g == gen and qos:
                client.ack(mid, qos)

    def pause(self) -> None:
        """Stop reading the socket: the broker holds further messages."""
        self._paused = True
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock)

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._add_reader()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    # ---- lifecycle ----

    async def run(self) -> None:
        """Connect, keep the connection, reconnect with backoff; until `stop()`."""
        self._loop = asyncio.get_running_loop()
        delay = self.cfg.reconnect_min_s
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        props.ReceiveMaximum = self.cfg.receive_maximum
        while not self._stopping:
            self._disconnected.clear()
            generation = self._generation
            try:
                await self._loop.run_in_executor(
                    None,
                    lambda: self._client.connect(
                        self.cfg.host,
                        self.cfg.port,
                        self.cfg.keepalive_s,
                        clean_start=False,
                        properties=props,
                    ),
                )
            except OSError as exc:
                log.warning(
                    "cannot reach MQTT broker %s:%d (%s); retry in %.1fs",
                    self.cfg.host,
                    self.cfg.port,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.cfg.reconnect_max_s)
                continue
            misc = asyncio.create_task(self._misc_loop())
            try:
                await self._disconnected.wait()
            finally:
                misc.cancel()
            if self._generation != generation:  # it did connect: start the backoff again
                delay = self.cfg.reconnect_min_s
            if not self._stopping:
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.cfg.reconnect_max_s)

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1)
            if self._client.loop_misc() != paho.MQTT_ERR_SUCCESS:
                self._disconnected.set()
                return

    async def stop(self) -> None:
        """Disconnect cleanly (the session stays on the broker)."""
        self._stopping = True
        if self._sock is not None:
            self._client.disconnect()
            self._client.loop_write()
        self._disconnected.set()
