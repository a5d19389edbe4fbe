"""MQTT source: an asyncio MQTT 5 subscriber, QoS 1, acknowledging after commit.

Owns the connection only: it hands the pipeline's intake the messages of each socket
read at once, as (topic, payload, packet id) with the connection's generation as the
epoch, and sends PUBACK when the pipeline hands tokens back after the commit — all
the acks of a batch in one write. A persistent session (fixed client id, session
expiry, clean start off) keeps messages published while the worker is down; a
shared subscription splits the load between workers; Receive Maximum sets the
in-flight window, which must exceed a batch. Acknowledgements for a connection that
is gone are dropped: the broker redelivers those messages, and the writer's
idempotent path stores them once.

A dropped connection is reconnected at once: Mosquitto does not restore shared
subscriptions after a restart, so what devices publish before the worker subscribes
again has no subscriber and is lost; only refused attempts back off (capped by
`mqtt.reconnect_max_s`, 1 s by default). A clean stop leaves the group: UNSUBSCRIBE,
commit and acknowledge what arrived, then DISCONNECT with session expiry 0, so that
nothing is parked on a worker that is gone. A crash keeps the session; `ingest
drain-session` empties it. A CONNACK refusal or a session taken over stops the worker.

The wire format lives in `mqtt_wire` (sans-I/O); docs/mqtt-client.md gives the
measurements that made us write it instead of using paho-mqtt or gmqtt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Hashable
from typing import Any

from ingest import topics
from ingest.config import ConfigError, MqttConfig
from ingest.metrics import ServiceMetrics
from ingest.sources import Intake, SocketReader
from ingest.sources import mqtt_wire as wire

log = logging.getLogger(__name__)

SUBSCRIBE_ID = 1
UNSUBSCRIBE_ID = 2
# Mosquitto 2.0 closes a session taken over without the DISCONNECT 0x8E of MQTT 5:
# connections that the broker closes this soon after accepting them, this many times
# in a row, mean another client uses this client id (two workers would otherwise
# take the session from each other for ever).
TAKEOVER_S = 5.0
TAKEOVER_STRIKES = 3
REASONS = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x8E: "session taken over",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9F: "connection rate exceeded",
}


class MqttRefused(Exception):
    """The broker will not take this worker as configured: retrying cannot help."""


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context of an mqtts:// connection: the broker's certificate checked
    against mqtt.tls_ca (or the system's CAs) and its name, unless mqtt.tls_verify is
    off; the client certificate when one is set."""
    if not cfg.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=cfg.tls_ca or None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"mqtt.tls_ca: cannot load {cfg.tls_ca}: {exc}") from None
    if cfg.tls_cert:
        try:
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.tls_cert: cannot load {cfg.tls_cert} with its key: {exc}") from None
    if not cfg.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Protocol(asyncio.Protocol):
    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.parser = wire.Parser(max_packet=source.cfg.max_packet_size)
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
            # MQTT 5 section 4.13: say why in a DISCONNECT, then close.
            log.error("MQTT protocol error from %s: %s; disconnecting", self.source._where(), exc)
            assert self.transport is not None
            self.transport.write(wire.disconnect(reason=exc.reason))
            self.transport.close()
            return
        src = self.source
        if events:
            for ev in events:
                src._event(ev)
        if messages and src._accepting:
            src.received += len(messages)
            src._intake.on_messages(src, src._generation, messages)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class MqttSource(SocketReader):
    name = "mqtt"

    def __init__(
        self, cfg: MqttConfig, intake: Intake, metrics: ServiceMetrics, subscribe: bool = True
    ) -> None:
        self.cfg = cfg
        self._intake = intake
        self._metrics = metrics
        self._subscribe = subscribe  # off for drain-session: take the queue, add nothing
        self._generation = 0
        self._paused = False
        self._stopping = False
        self._proto: _Protocol | None = None
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._unsubscribed = asyncio.Event()
        self._connack: asyncio.Future[wire.ConnAck] | None = None
        self._pong = asyncio.Event()
        self._acked_event = asyncio.Event()
        self._accepting = True  # off while stopping: later messages stay with the broker
        self._fatal: MqttRefused | None = None
        self._accepted_at = 0.0
        self.session_present: bool | None = None
        self.received = 0  # messages handed to the intake on this connection
        self.acked = 0  # of those, acknowledged
        self.filter = topics.subscription(cfg.prefix, cfg.group)
        self._tls = tls_context(cfg)  # at start: a bad certificate file is a setting's error

    def _where(self) -> str:
        scheme = "mqtts" if self.cfg.tls else "mqtt"
        return f"{scheme}://{self.cfg.host}:{self.cfg.port} (client id {self.cfg.client_id})"

    # ---- events from the protocol ----

    def _event(self, ev: wire.Event) -> None:
        if isinstance(ev, wire.ConnAck):
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(ev)
        elif isinstance(ev, wire.SubAck):
            if any(r >= 0x80 for r in ev.reasons):
                reason = ev.reasons[0]
                self._fail(f"the subscription to {self.filter} was refused: {_reason(reason)}")
            else:
                self._subscribed.set()
        elif isinstance(ev, wire.UnsubAck):
            self._unsubscribed.set()
        elif isinstance(ev, wire.PingResp):
            self._pong.set()
        elif isinstance(ev, wire.Disconnect):
            if ev.reason == 0x8E:
                self._fail(
                    "session taken over: another client connected with the same client id; "
                    "give every worker its own mqtt.client_id"
                )
            else:
                log.warning("broker disconnected the worker (%s)", _reason(ev.reason))

    def _fail(self, why: str) -> None:
        self._fatal = MqttRefused(f"{self._where()}: {why}")
        self._stopping = True
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()

    # ---- what the pipeline calls ----

    def ack(self, epoch: Hashable, tokens: list[Any]) -> None:
        proto = self._proto
        if epoch != self._generation or proto is None or proto.transport is None:
            return
        if proto.transport.is_closing():
            return
        ids = [pid for pid in tokens if pid]
        self.acked += len(tokens)
        self._acked_event.set()
        if ids:
            proto.transport.write(wire.pubacks(ids))

    def _reading(self) -> asyncio.Transport | None:
        return self._proto.transport if self._proto is not None else None

    @property
    def settled(self) -> bool:
        """Everything handed over on this connection has been acknowledged."""
        return self.acked >= self.received

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # ---- lifecycle ----

    async def _session(self) -> bool:
        """One connection: connect, subscribe, serve until it is lost. Returns whether
        the broker accepted the connection."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        tls = self._tls
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(self),
                    cfg.host,
                    cfg.port,
                    ssl=tls,
                    server_hostname=(cfg.tls_server_name or None) if tls else None,
                ),
                10,
            )
        except ssl.SSLCertVerificationError as exc:
            # A certificate that does not verify will not verify on the next attempt.
            raise MqttRefused(
                f"{self._where()}: the broker's TLS certificate for "
                f"{cfg.tls_server_name or cfg.host!r} was not accepted ({exc.reason}: {exc.verify_message}; "
                f"certificate verify failed): check mqtt.tls_ca and mqtt.tls_server_name"
            ) from None
        assert proto.transport is not None
        transport = proto.transport
        self._connack = loop.create_future()
        self._generation += 1
        self.received = self.acked = 0
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
                # Mosquitto 2.0 leaves the fixed header's first byte out when it
                # compares a packet with this limit, and would send one byte more
                # than the parser accepts: ask for one less.
                cfg.max_packet_size - 1,
            )
        )
        try:
            ack = await asyncio.wait_for(asyncio.shield(self._connack), 10)
        except TimeoutError:
            transport.abort()
            raise OSError("no CONNACK within 10 s") from None
        if ack.reason >= 0x80:
            transport.close()
            if ack.reason in (0x88, 0x89, 0x97, 0x9F):  # the broker may take us later
                log.error("MQTT broker %s refused the connection: %s", self._where(), _reason(ack.reason))
                return False
            raise MqttRefused(f"{self._where()} refused the connection: {_reason(ack.reason)}")
        keepalive = ack.server_keepalive or cfg.keepalive_s
        self._accepted_at = time.monotonic()
        self.session_present = ack.session_present
        log.info(
            "connected to %s (session %s); %s %s",
            self._where(),
            "resumed" if ack.session_present else "new",
            "subscribing to" if self._subscribe else "draining the session, unsubscribing from",
            self.filter,
        )
        if self._subscribe:
            transport.write(wire.subscribe(SUBSCRIBE_ID, self.filter))
        else:
            self._unsubscribed.clear()
            transport.write(wire.unsubscribe(UNSUBSCRIBE_ID, self.filter))
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
                log.warning("MQTT connection to %s lost; reconnecting at once", self._where())
        return True

    async def run(self) -> None:
        """Connect, keep the connection, reconnect; until `close()`. A lost connection
        is reconnected at once; refused or failed attempts back off, doubling from
        `reconnect_min_s` up to `reconnect_max_s`. Raises MqttRefused when the broker
        refuses this worker for good (credentials, authorisation, session taken over)."""
        delay = self.cfg.reconnect_min_s
        strikes = 0
        while not self._stopping:
            accepted = False
            try:
                accepted = await self._session()
            except (OSError, TimeoutError) as exc:
                log.warning("cannot reach MQTT broker %s (%s); retry in %.2fs", self._where(), exc, delay)
            if self._fatal is not None:
                raise self._fatal
            if self._stopping:
                break
            if accepted:
                strikes = strikes + 1 if time.monotonic() - self._accepted_at < TAKEOVER_S else 0
                if strikes >= TAKEOVER_STRIKES:
                    raise MqttRefused(
                        f"{self._where()}: the broker closed the connection {strikes} times within "
                        f"{TAKEOVER_S:.0f} s of accepting it: the session was probably taken over by "
                        "another client with the same client id; give every worker its own mqtt.client_id"
                    )
                delay = self.cfg.reconnect_min_s
                continue
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    async def _ping(self, within: float) -> bool:
        """A PINGREQ/PINGRESP round trip: the broker has processed what was sent before."""
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return False
        self._pong.clear()
        proto.transport.write(wire.PINGREQ_PACKET)
        try:
            await asyncio.wait_for(self._pong.wait(), within)
            return True
        except TimeoutError:
            return False

    async def stop_intake(self, within: float | None = None) -> None:
        """Leave the group: UNSUBSCRIBE, then keep taking what the broker still sends
        this session (in flight, or queued behind the in-flight window) until every
        message is acknowledged and a PING round trip brings nothing new. At most
        `within` seconds (`mqtt.leave_timeout_s` by default)."""
        self._stopping = True
        proto = self._proto
        if proto is None or proto.transport is None or not self._connected.is_set():
            return
        deadline = time.monotonic() + (self.cfg.leave_timeout_s if within is None else within)
        self.resume()
        if self._subscribe:
            self._unsubscribed.clear()
            proto.transport.write(wire.unsubscribe(UNSUBSCRIBE_ID, self.filter))
        try:
            await asyncio.wait_for(self._unsubscribed.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("no UNSUBACK from %s", self._where())
            return
        while time.monotonic() < deadline:
            before = self.received
            while not self.settled and time.monotonic() < deadline:
                self._acked_event.clear()
                try:
                    await asyncio.wait_for(self._acked_event.wait(), max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
            if not self.settled:
                break
            if await self._ping(max(0.01, deadline - time.monotonic())) and self.received == before:
                return

    async def close(self) -> None:
        """Disconnect. When every message handed over on this connection was
        acknowledged, the session ends (expiry 0): nothing stays parked for a worker
        that is gone. Otherwise the session stays, and the broker delivers what was not
        acknowledged again — to this client id when it comes back, or to `ingest
        drain-session`. Mosquitto drops what it has not read yet when the peer
        closes, PUBACKs included, so first a PING round trip makes sure the broker has
        processed every acknowledgement sent before it."""
        self._stopping = True
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            return
        transport = proto.transport
        end_session = False
        if self._connected.is_set():
            self._accepting = False
            transport.resume_reading()
            if not await self._ping(1):
                log.warning("no PINGRESP before disconnecting: the last acknowledgements may be redelivered")
            end_session = self.settled
        if not end_session:
            log.warning(
                "%d messages not acknowledged: the session of %s stays on the broker "
                "(`ingest drain-session %s` takes them over)",
                self.received - self.acked,
                self.cfg.client_id,
                self.cfg.client_id,
            )
        if not transport.is_closing():
            transport.write(wire.disconnect(0 if end_session else None))
            transport.close()


def _reason(code: int) -> str:
    return f"reason 0x{code:02x}, {REASONS.get(code, 'unknown')}"
