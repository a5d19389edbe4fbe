"""MQTT source: an asyncio MQTT 5 subscriber, QoS 1, acknowledging after commit.

Owns the connection only: it hands the sink the messages of each socket read at
once, as (topic, payload, packet id) with the connection's generation, and sends
PUBACK when the pipeline hands tokens back after the commit — all the acks of a batch
in one write. A persistent session (fixed client id, session expiry, clean start
off) keeps messages published while the worker is down; a shared subscription splits
the load between workers; Receive Maximum sets the in-flight window, which must
exceed a batch. Reconnects with backoff. A token is (connection generation, packet
id): acknowledgements for a connection that is gone are dropped — the broker
redelivers those messages, and the writer's idempotent path stores them once.

The wire format lives in `mqtt_wire` (sans-I/O); docs/mqtt-client.md gives the
measurements that made us write it instead of using paho-mqtt or gmqtt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

from ingest import topics
from ingest.config import MqttConfig
from ingest.metrics import ServiceMetrics
from ingest.sources import mqtt_wire as wire

log = logging.getLogger(__name__)

# sink(messages, generation): the PUBLISH messages of one read, as (topic, payload,
# packet id); a message's acknowledgement token is (generation, packet id).
Sink = Callable[[list[wire.Message], int], None]
SUBSCRIBE_ID = 1


class _Protocol(asyncio.Protocol):
    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.parser = wire.Parser()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        try:
            messages, events = self.parser.feed(data)
        except wire.ProtocolError as exc:
            log.error("MQTT protocol error from the broker: %s", exc)
            assert self.transport is not None
            self.transport.abort()
            return
        src = self.source
        if events:
            for ev in events:
                src._event(ev)
        if messages and src._accepting:
            src._sink(messages, src._generation)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class MqttSource:
    def __init__(self, cfg: MqttConfig, sink: Sink, metrics: ServiceMetrics) -> None:
        self.cfg = cfg
        self._sink = sink
        self._metrics = metrics
        self._generation = 0
        self._paused = False
        self._stopping = False
        self._proto: _Protocol | None = None
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._connack: asyncio.Future[wire.ConnAck] | None = None
        self._pong = asyncio.Event()
        self._accepting = True  # off while stopping: later messages stay with the broker
        self.session_present: bool | None = None
        self.filter = topics.subscription(cfg.prefix, cfg.group)

    # ---- events from the protocol ----

    def _event(self, ev: wire.Event) -> None:
        if isinstance(ev, wire.ConnAck):
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(ev)
        elif isinstance(ev, wire.SubAck):
            if any(r >= 0x80 for r in ev.reasons):
                log.error("subscription to %s refused (reason 0x%02x)", self.filter, ev.reasons[0])
                if self._proto and self._proto.transport:
                    self._proto.transport.close()
            else:
                self._subscribed.set()
        elif isinstance(ev, wire.PingResp):
            self._pong.set()
        elif isinstance(ev, wire.Disconnect):
            log.warning("broker disconnected the worker (reason 0x%02x)", ev.reason)

    # ---- what the pipeline calls ----

    def ack(self, tokens: list[Any]) -> None:
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return
        gen = self._generation
        ids = [pid for g, pid in tokens if g == gen and pid]
        if ids:
            proto.transport.write(wire.pubacks(ids))

    def pause(self) -> None:
        """Stop reading the socket: the broker holds further messages."""
        self._paused = True
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if self._proto is not None and self._proto.transport is not None:
                self._proto.transport.resume_reading()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    # ---- lifecycle ----

    async def _session(self) -> bool:
        """One connection: connect, subscribe, serve until it is lost. Returns whether
        the broker accepted the connection."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        ctx = ssl.create_default_context() if cfg.tls else None
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), cfg.host, cfg.port, ssl=ctx), 10
        )
        assert proto.transport is not None
        transport = proto.transport
        self._connack = loop.create_future()
        self._generation += 1
        self._proto = proto
        transport.write(
            wire.connect(
                cfg.client_id,
                cfg.keepalive_s,
                False,
                cfg.session_expiry_s,
                cfg.receive_maximum,
                cfg.username,
                cfg.password,
            )
        )
        try:
            ack = await asyncio.wait_for(asyncio.shield(self._connack), 10)
        except TimeoutError:
            transport.abort()
            raise OSError("no CONNACK within 10 s") from None
        if ack.reason >= 0x80:
            transport.close()
            log.error("MQTT broker refused the connection (reason 0x%02x)", ack.reason)
            return False
        keepalive = ack.server_keepalive or cfg.keepalive_s
        self.session_present = ack.session_present
        log.info(
            "connected to mqtt://%s:%d as %s (session %s); subscribing to %s",
            cfg.host,
            cfg.port,
            cfg.client_id,
            "resumed" if ack.session_present else "new",
            self.filter,
        )
        transport.write(wire.subscribe(SUBSCRIBE_ID, self.filter))
        if self._paused:
            transport.pause_reading()
        self._connected.set()
        self._metrics.mqtt_connected.set(1)
        self._metrics.mqtt_reconnects.inc()
        try:
            while not proto.closed.done():
                await asyncio.wait([proto.closed], timeout=keepalive / 2)
                if proto.closed.done():
                    break
                idle = time.monotonic() - proto.last_rx
                if idle > keepalive * 1.5 and not self._paused:
                    log.warning("no traffic from the broker for %.0f s: reconnecting", idle)
                    transport.abort()
                    break
                transport.write(wire.PINGREQ_PACKET)
        finally:
            self._connected.clear()
            self._subscribed.clear()
            self._metrics.mqtt_connected.set(0)
            if not transport.is_closing():
                transport.abort()
            if not self._stopping:
                log.warning("MQTT connection lost; reconnecting")
        return True

    async def run(self) -> None:
        """Connect, keep the connection, reconnect with backoff; until `stop()`."""
        delay = self.cfg.reconnect_min_s
        while not self._stopping:
            try:
                accepted = await self._session()
                if accepted:
                    delay = self.cfg.reconnect_min_s
            except (OSError, TimeoutError) as exc:
                log.warning(
                    "cannot reach MQTT broker %s:%d (%s); retry in %.1fs",
                    self.cfg.host,
                    self.cfg.port,
                    exc,
                    delay,
                )
            if self._stopping:
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    async def stop(self) -> None:
        """Disconnect cleanly (the session stays on the broker). Mosquitto drops what
        it has not read yet when the peer closes, PUBACKs included, so first a PINGREQ
        and its PINGRESP make sure the broker has processed every acknowledgement sent
        before it; messages that arrive meanwhile are left unacknowledged, for the
        broker to deliver again."""
        self._stopping = True
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return
        transport = proto.transport
        if self._connected.is_set():
            self._accepting = False
            self._pong.clear()
            transport.resume_reading()
            transport.write(wire.PINGREQ_PACKET)
            try:
                await asyncio.wait_for(self._pong.wait(), 5)
            except TimeoutError:
                log.warning("no PINGRESP before disconnecting: the last acknowledgements may be redelivered")
        if not transport.is_closing():
            transport.write(wire.DISCONNECT_PACKET)
            transport.close()
