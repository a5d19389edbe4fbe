"""AMQP source: the durable, clustered transport (docs/transport.md).

Devices publish MQTT to the RabbitMQ cluster's MQTT listener; the MQTT plugin puts
each message on `amq.topic` with the topic as routing key (`/` made `.`), and
a replicated quorum queue bound to `<prefix>.v1.#` keeps it on disk on a majority of
the nodes before the device gets its PUBACK, whether or not a worker is connected.
Workers consume that one queue over AMQP 0-9-1 with manual acknowledgements; the
broker hands each message to one worker, at most `prefetch` unacknowledged at a time,
and when a worker's connection goes (crash, SIGKILL, missed heartbeats) its
unacknowledged messages return to the queue for the others at once.

A token is the delivery tag, an epoch is one channel. The pipeline commits batches
out of order (two writers), and `multiple=True` acknowledges every lower tag on the
channel, so acknowledgements go out only for the contiguous committed prefix
(`AckWindow`). Acknowledgements for a channel that is gone are dropped: the broker
delivers those messages again and the idempotent writer stores them once.

The framing lives in `amqp_wire` (sans-I/O); docs/transport.md gives the measurements
that made us write it instead of using aiormq.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import ssl
import time
from collections.abc import Hashable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from pamqp import heartbeat

from ingest.config import AmqpConfig
from ingest.sources import Intake, SocketReader
from ingest.sources import amqp_wire as wire

log = logging.getLogger(__name__)

_SWAP = str.maketrans("./", "/.")
CHANNEL = 1
# Reply codes that no reconnect can cure: the worker stops, saying why.
_FATAL = {403: "access refused", 404: "not found", 406: "precondition failed", 530: "not allowed"}


def topic_of(routing_key: str, prefix: str) -> str:
    """The MQTT topic of a routing key RabbitMQ's MQTT plugin made. It turns each `/`
    into `.` and, on 3.10 (seen on 3.10.8), leaves a `.` as it is, so a device id's `.`
    reads as a separator: the topic grammar `<prefix>/v1/<class>/<device_id>/<channel>`
    (no `.` in a class or a channel) puts the id back together. A key with a `/` comes
    from a release that swaps the two, and is swapped back. A key of another shape is
    returned with its `.` as `/`, for the dispatcher's dead letter to name."""
    if "/" in routing_key:
        return routing_key.translate(_SWAP)
    head = prefix.replace("/", ".") + ".v1."
    if routing_key.startswith(head):
        cls, _, rest = routing_key[len(head) :].partition(".")
        device, dot, channel = rest.rpartition(".")
        if cls and dot and device and channel:
            return f"{prefix}/v1/{cls}/{device}/{channel}"
    return routing_key.replace(".", "/")


class AckWindow:
    """Which delivery tags of one channel may be acknowledged with `multiple=True`:
    tags are 1, 2, 3… in delivery order; `upto` is the highest tag below which every
    tag is done."""

    __slots__ = ("_done", "upto")

    def __init__(self) -> None:
        self.upto = 0
        self._done: set[int] = set()

    def add(self, tags: Iterable[int]) -> bool:
        """Mark tags done; True when `upto` moved."""
        done = self._done
        done.update(tags)
        start = self.upto
        nxt = start + 1
        while nxt in done:
            done.remove(nxt)
            nxt += 1
        self.upto = nxt - 1
        return self.upto != start

    @property
    def held(self) -> int:
        """Tags done but waiting for a lower one."""
        return len(self._done)


def tls_context(cfg: AmqpConfig) -> ssl.SSLContext:
    """Verification on unless `verify = false`; the CA file replaces the system's."""
    ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    if not cfg.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Refused(Exception):
    """The broker closed the connection or channel with a reply code."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code


class _Protocol(asyncio.Protocol):
    def __init__(self, source: AmqpSource) -> None:
        self.source = source
        self.parser = wire.Parser()
        self.transport: asyncio.Transport | None = None
        self.frames: asyncio.Queue[Any] = asyncio.Queue()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()
        self.epoch = 0  # set once the consumer is running

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        try:
            deliveries, events = self.parser.feed(data)
        except wire.ProtocolError as exc:
            log.error("AMQP protocol error from the broker: %s", exc)
            assert self.transport is not None
            self.transport.abort()
            return
        for _, f in events:
            if not isinstance(f, heartbeat.Heartbeat):
                self.frames.put_nowait(f)
        src = self.source
        if deliveries and src._accepting and self.epoch:
            src.intake.on_messages(
                src, self.epoch, [(topic_of(k, src.prefix), b, t) for k, b, t in deliveries]
            )

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.frames.put_nowait(None)


class AmqpSource(SocketReader):
    name = "amqp"

    def __init__(self, cfg: AmqpConfig, prefix: str, intake: Intake) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.intake = intake
        self.binding = f"{prefix}.v1.#"
        self.consumer_tag = f"ingest-{secrets.token_hex(4)}"
        self._epoch = 0
        self._window = AckWindow()
        self._proto: _Protocol | None = None
        self._paused = False
        self._stopping = False
        self._accepting = True
        self._cancelled = asyncio.Event()
        self._close_ok = asyncio.Event()
        self._connected = asyncio.Event()
        self.node = ""  # host:port of the node consumed from, for logs and tests
        self._heartbeat = cfg.heartbeat_s

    # ---- what the pipeline calls ----

    def ack(self, epoch: Hashable, tokens: list[Any]) -> None:
        proto = self._proto
        if proto is None or epoch != proto.epoch or proto.closed.done():
            return  # the connection is gone: the broker delivers these again
        if self._window.add(tokens):
            proto.write(wire.ack(CHANNEL, self._window.upto, True))

    def _reading(self) -> asyncio.Transport | None:
        return self._proto.transport if self._proto is not None else None

    async def wait_connected(self) -> None:
        """Until the consumer is registered: from then on the queue delivers to us."""
        await self._connected.wait()

    wait_subscribed = wait_connected  # the MQTT source's name for the same moment

    # ---- one connection ----

    async def _expect(self, proto: _Protocol, *kinds: type[Any]) -> Any:
        """The next frame, which must be one of `kinds`; a Close from the broker raises."""
        wait = self.cfg.connect_timeout_s
        try:
            f = await asyncio.wait_for(proto.frames.get(), wait)
        except TimeoutError:
            raise TimeoutError(f"no {kinds[0].__name__} from the broker within {wait:.0f} s") from None
        if f is None:
            raise ConnectionError("connection closed by the broker")
        if isinstance(f, wire.Connection.Close):
            proto.write(wire.method(0, wire.Connection.CloseOk()))
            raise Refused(f.reply_code or 0, f.reply_text)
        if isinstance(f, wire.Channel.Close):
            proto.write(wire.method(CHANNEL, wire.Channel.CloseOk()))
            raise Refused(f.reply_code or 0, f.reply_text)
        if not isinstance(f, kinds):
            raise wire.ProtocolError(f"expected {kinds[0].__name__}, got {type(f).__name__}")
        return f

    async def _session(self, url: str) -> None:
        cfg = self.cfg
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        tls = parts.scheme == "amqps"
        port = parts.port or (5671 if tls else 5672)
        user = unquote(parts.username) if parts.username else "guest"
        password = unquote(parts.password) if parts.password else "guest"
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {}
        if tls:
            kwargs = {"ssl": tls_context(cfg), "server_hostname": cfg.server_name or host}
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), host, port, **kwargs), cfg.connect_timeout_s
        )
        self._proto = proto
        try:
            await self._handshake(proto, user, password, vhost)
            self.node = f"{host}:{port}"
            log.info("consuming %s on amqp node %s (prefetch %d)", cfg.queue, self.node, cfg.prefetch)
            await self._serve(proto)
        finally:
            self._connected.clear()
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.abort()
            if not self._stopping:
                log.warning("AMQP connection to %s:%d lost; reconnecting", host, port)

    async def _handshake(self, proto: _Protocol, user: str, password: str, vhost: str) -> None:
        cfg = self.cfg
        proto.write(wire.PROTOCOL_HEADER)
        start = await self._expect(proto, wire.Connection.Start)
        if "PLAIN" not in str(start.mechanisms).split():
            raise Refused(0, f"the broker offers no PLAIN login ({start.mechanisms})")
        caps: dict[str, Any] = {"authentication_failure_close": True, "consumer_cancel_notify": True}
        proto.write(
            wire.method(
                0,
                wire.Connection.StartOk(
                    client_properties={"product": "gz-infra-ingest", "capabilities": caps},
                    mechanism="PLAIN",
                    response=f"\0{user}\0{password}",
                ),
            )
        )
        tune = await self._expect(proto, wire.Connection.Tune)
        beat = min(cfg.heartbeat_s, tune.heartbeat) if tune.heartbeat else cfg.heartbeat_s
        frame_max = min(tune.frame_max or 131072, 131072)
        proto.parser.max_frame = frame_max
        self._heartbeat = beat
        proto.write(
            wire.method(0, wire.Connection.TuneOk(channel_max=1, frame_max=frame_max, heartbeat=beat))
        )
        proto.write(wire.method(0, wire.Connection.Open(virtual_host=vhost)))
        await self._expect(proto, wire.Connection.OpenOk)
        proto.write(wire.method(CHANNEL, wire.Channel.Open()))
        await self._expect(proto, wire.Channel.OpenOk)
        if cfg.declare:
            proto.write(
                wire.method(
                    CHANNEL,
                    wire.Queue.Declare(queue=cfg.queue, durable=True, arguments={"x-queue-type": "quorum"}),
                )
            )
            await self._expect(proto, wire.Queue.DeclareOk)
            proto.write(
                wire.method(
                    CHANNEL, wire.Queue.Bind(queue=cfg.queue, exchange=cfg.exchange, routing_key=self.binding)
                )
            )
            await self._expect(proto, wire.Queue.BindOk)
        proto.write(wire.method(CHANNEL, wire.Basic.Qos(prefetch_count=cfg.prefetch)))
        await self._expect(proto, wire.Basic.QosOk)
        self._epoch += 1
        self._window = AckWindow()
        proto.epoch = self._epoch
        consume = wire.Basic.Consume(queue=cfg.queue, consumer_tag=self.consumer_tag)
        proto.write(wire.method(CHANNEL, consume))
        await self._expect(proto, wire.Basic.ConsumeOk)
        if self._paused and proto.transport is not None:
            proto.transport.pause_reading()
        self._connected.set()

    async def _serve(self, proto: _Protocol) -> None:
        """Heartbeats both ways and the broker's rare frames, until the connection ends."""
        beat = self._heartbeat
        while not proto.closed.done():
            try:
                f = await asyncio.wait_for(proto.frames.get(), beat / 2)
            except TimeoutError:
                f = False
            if f is None:
                return
            if f is False:
                proto.write(wire.HEARTBEAT)
                idle = time.monotonic() - proto.last_rx
                if idle > beat * 2 and not self._paused:
                    log.warning("no traffic from the AMQP node for %.0f s: reconnecting", idle)
                    return
            elif isinstance(f, wire.Connection.CloseOk):
                self._close_ok.set()  # ours: the acknowledgements before it are processed
                return
            elif isinstance(f, wire.Basic.CancelOk):
                self._cancelled.set()
            elif isinstance(f, wire.Basic.Cancel):
                log.warning("the broker cancelled the consumer (queue deleted or moved): reconnecting")
                return
            elif isinstance(f, wire.Connection.Close | wire.Channel.Close):
                proto.write(
                    wire.method(0, wire.Connection.CloseOk())
                    if isinstance(f, wire.Connection.Close)
                    else wire.method(CHANNEL, wire.Channel.CloseOk())
                )
                log.warning(
                    "AMQP node closed the %s: %s %s",
                    "connection" if isinstance(f, wire.Connection.Close) else "channel",
                    f.reply_code,
                    f.reply_text,
                )
                return

    # ---- lifecycle ----

    async def run(self) -> None:
        """Connect to the nodes in turn, consume, reconnect; until `close()`."""
        urls = self.cfg.urls
        i = random.randrange(len(urls))  # workers spread over the nodes
        delay = self.cfg.reconnect_min_s
        while not self._stopping:
            url = urls[i % len(urls)]
            where = _where(url)
            try:
                await self._session(url)
                delay = self.cfg.reconnect_min_s
            except Refused as exc:
                if exc.code in _FATAL:
                    raise RuntimeError(f"AMQP node {where} refused the worker: {exc}") from None
                log.warning("AMQP node %s refused the worker (%s)", where, exc)
            except ssl.SSLCertVerificationError as exc:
                raise RuntimeError(f"AMQP node {where}: TLS verification failed: {exc}") from None
            except (OSError, TimeoutError, wire.ProtocolError) as exc:
                log.warning("cannot consume from AMQP node %s (%s)", where, exc)
            if self._stopping:
                break
            i += 1
            # failing over to the next node is immediate; only a full round backs off
            if i % len(urls) == 0:
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.cfg.reconnect_max_s)

    async def stop_intake(self) -> None:
        """Cancel the consumer: no new deliveries; what was delivered is committed and
        acknowledged by the pipeline before `close()`."""
        self._accepting = False
        proto = self._proto
        if proto is None or proto.closed.done() or not self._connected.is_set():
            return
        self._cancelled.clear()
        proto.write(wire.method(CHANNEL, wire.Basic.Cancel(consumer_tag=self.consumer_tag)))
        try:
            await asyncio.wait_for(self._cancelled.wait(), 5)
        except TimeoutError:
            log.warning("no Basic.CancelOk within 5 s")

    async def close(self) -> None:
        """After the last acknowledgement: close the connection (the broker requeues
        whatever is still unacknowledged). Connection.Close waits for CloseOk, so the
        acknowledgements written before it have been processed."""
        self._stopping = True
        proto = self._proto
        if proto is None or proto.closed.done():
            return
        if self._connected.is_set():
            proto.write(
                wire.method(
                    0,
                    wire.Connection.Close(
                        reply_code=200, reply_text="worker stopping", class_id=0, method_id=0
                    ),
                )
            )
            try:
                await asyncio.wait_for(self._close_ok.wait(), 5)
            except TimeoutError:
                log.warning("no Connection.CloseOk within 5 s")
        if proto.transport is not None and not proto.transport.is_closing():
            proto.transport.close()


def _where(url: str) -> str:
    u = urlsplit(url)
    return f"{u.hostname}:{u.port or (5671 if u.scheme == 'amqps' else 5672)}"
