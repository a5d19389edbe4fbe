#!/usr/bin/env python3
"""Benchmark Python MQTT clients for an ingestion service that acks after commit.

What is measured
----------------
Draining a backlog of QoS 1 messages queued on mosquitto for a persistent MQTT
session (shared subscription ``$share/ingest/gz/v1/+/+/+``), with the service's
delivery contract: a message's PUBACK is sent only AFTER the batch that contains
it has been "committed".  Batches close at ``--batch-size`` messages or
``--batch-age-ms`` age, whichever comes first; the commit is simulated with
``await asyncio.sleep(--commit-ms)`` (one commit at a time, like one DB
connection); then every PUBACK of the batch is sent.

For every run the script:

1. starts its own mosquitto (``/usr/sbin/mosquitto``) on a free 127.0.0.1 port
   with a generated config (unlimited queue, no persistence);
2. starts a worker subprocess for the client variant, which connects with a
   persistent session (fixed client id, session expiry 3600 s), subscribes at
   QoS 1 and disconnects;
3. publishes N ~200-byte JSON messages at QoS 1 to
   ``gz/v1/charger/dev{i % devices}/telemetry`` with ``mosquitto_pub -l``
   (one process per device topic, at most 50k lines per process);
4. tells the worker to reconnect and times until every message has been
   received and acknowledged after its batch commit; wall time and the
   worker's ``time.process_time()`` (CPU of the subscriber process, all
   threads) are recorded;
5. checks every sequence number was received exactly once, and resumes the
   session with ``mosquitto_sub`` to count messages the broker still holds as
   unacknowledged (must be 0);
6. stops the broker.

A window sweep then shows how the MQTT v5 Receive Maximum (the broker's
in-flight window towards the subscriber) interacts with batching: when the
window is smaller than the batch size every batch waits for the age timer.
``max_unacked`` records the largest number of received-but-unacknowledged
messages the subscriber actually saw, i.e. the window the broker really used
(mosquitto 2.0.11 overshoots small windows once acks flow; see
eclipse-mosquitto/mosquitto#2301).

Results are printed as a table and written to ``bench/results/mqtt_clients.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from ingest.localservices import terminate

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
HOST = "127.0.0.1"
SHARED_FILTER = "$share/ingest/gz/v1/+/+/+"
SESSION_EXPIRY_S = 3600
MAX_LINES_PER_PUB = 50_000  # mosquitto_pub -l 2.0.11 stops silently past 65,535 lines
BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "mqtt_clients.json"


# --------------------------------------------------------------------------- #
# Variants
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Variant:
    """One client configuration under test."""

    name: str
    lib: str  # own | gmqtt | paho-asyncio | paho-thread | aiomqtt | mosquitto_sub
    uvloop: bool
    deferred_ack: bool  # PUBACK sent only after the batch commit?
    meets_requirement: str  # "yes", "no", or a qualified answer
    note: str
    burst_reads: bool = False  # paho-asyncio: loop_read() until a read yields nothing


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant(
            "own",
            "own",
            False,
            True,
            "yes",
            "the worker's own client (ingest.sources.mqtt): all PUBACKs of a batch in one write",
        ),
        Variant("own-uvloop", "own", True, True, "yes", "as own, uvloop event loop"),
        Variant(
            "gmqtt",
            "gmqtt",
            False,
            True,
            "yes",
            "MQTT v5, optimistic_acknowledgement=False, async on_message awaits commit",
        ),
        Variant("gmqtt-uvloop", "gmqtt", True, True, "yes", "as gmqtt, uvloop event loop"),
        Variant(
            "gmqtt-uvloop-optimistic",
            "gmqtt",
            True,
            False,
            "no",
            "reference: optimistic_acknowledgement=True (PUBACK on receipt), sync on_message",
        ),
        Variant(
            "paho-asyncio",
            "paho-asyncio",
            False,
            True,
            "yes",
            "manual_ack=True, add_reader/add_writer + loop_read/loop_write/loop_misc "
            "(paho's asyncio example: one loop_read per readiness event)",
        ),
        Variant("paho-asyncio-uvloop", "paho-asyncio", True, True, "yes", "as paho-asyncio, uvloop"),
        Variant(
            "paho-asyncio-uvloop-burst",
            "paho-asyncio",
            True,
            True,
            "yes",
            "as paho-asyncio-uvloop, but loop_read() repeated while it yields messages",
            burst_reads=True,
        ),
        Variant(
            "paho-thread",
            "paho-thread",
            False,
            True,
            "yes",
            "manual_ack=True, paho loop_start() thread; batching/commit/ack() on the asyncio thread",
        ),
        Variant(
            "aiomqtt",
            "aiomqtt",
            False,
            False,
            "no",
            "as-is: paho underneath acks on receipt; no public deferred-ack API",
        ),
        Variant("aiomqtt-uvloop", "aiomqtt", True, False, "no", "as aiomqtt, uvloop"),
        Variant(
            "aiomqtt-uvloop-private-ack",
            "aiomqtt",
            True,
            True,
            "yes, via private API",
            "client._client.manual_ack_set(True) + client._client.ack(mid, 1) (unsupported)",
        ),
        Variant(
            "mosquitto_sub",
            "mosquitto_sub",
            False,
            False,
            "no",
            "C reference: mosquitto_sub -V 5 -c -C N (acks on receipt, no batching)",
        ),
    ]
}
DEFAULT_VARIANTS = list(VARIANTS)
DEFAULT_SWEEP_VARIANTS = ["gmqtt-uvloop", "paho-asyncio-uvloop-burst"]
DEFAULT_WINDOWS = "none,20,1000,5000,10000,65535"


# --------------------------------------------------------------------------- #
# Worker side (runs in a subprocess, one per measured run)
# --------------------------------------------------------------------------- #
@dataclass
class WorkerConfig:
    """Parameters handed to a worker subprocess as JSON."""

    variant: str
    port: int
    client_id: str
    messages: int
    receive_maximum: int | None  # None: do not send the property
    batch_size: int
    batch_age_s: float
    commit_s: float
    stall_timeout_s: float


class DrainState:
    """Counts received/acknowledged messages and decides when the drain is done."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = bytearray(n)
        self.received = 0
        self.unique = 0
        self.duplicates = 0
        self.bad_payloads = 0
        self.acked = 0
        self.max_unacked = 0  # largest received-but-not-yet-acked count seen
        self.done = asyncio.Event()
        self.timed_out = False

    def on_payload(self, payload: bytes) -> None:
        self.received += 1
        if self.received - self.acked > self.max_unacked:
            self.max_unacked = self.received - self.acked
        try:
            seq = orjson.loads(payload)["seq"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.bad_payloads += 1
            return
        if not 0 <= seq < self.n:
            self.bad_payloads += 1
            return
        if self.seen[seq]:
            self.duplicates += 1
            if self.seen[seq] < 255:
                self.seen[seq] += 1
        else:
            self.seen[seq] = 1
            self.unique += 1

    def on_acked(self, count: int) -> None:
        self.acked += count
        if self.unique >= self.n and self.acked >= self.received:
            self.done.set()

    async def watchdog(self, stall_timeout_s: float) -> None:
        """Stop the drain if nothing moves for stall_timeout_s (missing messages)."""
        last = (-1, -1)
        last_change = time.monotonic()
        while not self.done.is_set():
            await asyncio.sleep(0.25)
            now = (self.received, self.acked)
            if now != last:
                last, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > stall_timeout_s:
                self.timed_out = True
                self.done.set()


class Batcher:
    """Size/age batcher with a single sequential committer.

    ``add`` returns the future of the batch the item joined; it resolves after
    the batch has been committed and ``on_commit`` (which sends the PUBACKs) ran.
    """

    def __init__(
        self,
        size: int,
        age_s: float,
        commit_s: float,
        on_commit: Callable[[list[Any]], None],
    ) -> None:
        self.size = size
        self.age_s = age_s
        self.commit_s = commit_s
        self.on_commit = on_commit
        self._loop = asyncio.get_running_loop()
        self._items: list[Any] = []
        self._future: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sealed: asyncio.Queue[tuple[list[Any], asyncio.Future[None]]] = asyncio.Queue()
        self.size_flushes = 0
        self.timer_flushes = 0

    def add(self, item: Any) -> asyncio.Future[None]:
        if not self._items:
            self._future = self._loop.create_future()
            self._timer = self._loop.call_later(self.age_s, self._on_timer)
        self._items.append(item)
        fut = self._future
        assert fut is not None
        if len(self._items) >= self.size:
            self.size_flushes += 1
            self._seal()
        return fut

    def _on_timer(self) -> None:
        if self._items:
            self.timer_flushes += 1
            self._seal()

    def _seal(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self._future is not None
        self._sealed.put_nowait((self._items, self._future))
        self._items, self._future = [], None

    async def run(self) -> None:
        while True:
            items, fut = await self._sealed.get()
            await asyncio.sleep(self.commit_s)  # simulated database commit
            self.on_commit(items)
            fut.set_result(None)


def _noop_commit(items: list[Any]) -> None:
    del items


async def _drain_common(
    cfg: WorkerConfig,
    consume: Callable[[DrainState, Batcher], Awaitable[Callable[[], Awaitable[None]]]],
    make_on_commit: Callable[[DrainState], Callable[[list[Any]], None]] | None = None,
) -> dict[str, Any]:
    """Time one drain: consume() connects and returns a disconnect coroutine factory."""
    state = DrainState(cfg.messages)
    on_commit = make_on_commit(state) if make_on_commit else _noop_commit
    batcher = Batcher(cfg.batch_size, cfg.batch_age_s, cfg.commit_s, on_commit)
    committer = asyncio.create_task(batcher.run())
    watchdog = asyncio.create_task(state.watchdog(cfg.stall_timeout_s))
    t0, c0 = time.perf_counter(), time.process_time()
    disconnect = await consume(state, batcher)
    await state.done.wait()
    for _ in range(3):  # let done-callbacks (gmqtt PUBACK) and writers run
        await asyncio.sleep(0)
    t1, c1 = time.perf_counter(), time.process_time()
    await disconnect()
    committer.cancel()
    watchdog.cancel()
    return {
        "elapsed_s": t1 - t0,
        "cpu_s": c1 - c0,
        "received": state.received,
        "unique": state.unique,
        "duplicates": state.duplicates,
        "missing": cfg.messages - state.unique,
        "bad_payloads": state.bad_payloads,
        "acked": state.acked,
        "max_unacked": state.max_unacked,
        "timed_out": state.timed_out,
        "batches": batcher.size_flushes + batcher.timer_flushes,
        "size_flushes": batcher.size_flushes,
        "timer_flushes": batcher.timer_flushes,
    }


# ---- gmqtt ------------------------------------------------------------------ #
class GmqttImpl:
    def __init__(self, cfg: WorkerConfig, variant: Variant) -> None:
        self.cfg = cfg
        self.variant = variant

    def _client(self, clean: bool) -> Any:
        import gmqtt

        props: dict[str, Any] = {"session_expiry_interval": SESSION_EXPIRY_S}
        if self.cfg.receive_maximum is not None:
            props["receive_maximum"] = self.cfg.receive_maximum
        return gmqtt.Client(
            self.cfg.client_id,
            clean_session=clean,
            optimistic_acknowledgement=not self.variant.deferred_ack,
            **props,
        )

    async def setup(self) -> None:
        from gmqtt.mqtt.constants import MQTTv50

        client = self._client(clean=True)
        subscribed = asyncio.Event()
        client.on_subscribe = lambda *_a: subscribed.set()
        await client.connect(HOST, self.cfg.port, version=MQTTv50)
        client.subscribe(SHARED_FILTER, qos=1)
        await asyncio.wait_for(subscribed.wait(), 10)
        await client.disconnect()

    async def drain(self) -> dict[str, Any]:
        from gmqtt.mqtt.constants import MQTTv50

        async def consume(state: DrainState, batcher: Batcher) -> Callable[[], Awaitable[None]]:
            client = self._client(clean=False)
            if self.variant.deferred_ack:
                # One task per message (gmqtt wraps coroutine handlers in a task);
                # gmqtt sends the PUBACK when the task finishes, with the returned
                # int as reason code. Returning None raises inside gmqtt and no
                # PUBACK is ever sent.
                async def on_message(_c: Any, _t: str, payload: bytes, _q: int, _p: dict[str, Any]) -> int:
                    state.on_payload(payload)
                    await batcher.add(None)
                    state.on_acked(1)
                    return 0
            else:

                def on_message(_c: Any, _t: str, payload: bytes, _q: int, _p: dict[str, Any]) -> int:  # type: ignore[misc]
                    state.on_payload(payload)
                    batcher.add(None)
                    return 0

                batcher.on_commit = lambda items: state.on_acked(len(items))
            client.on_message = on_message
            await client.connect(HOST, self.cfg.port, version=MQTTv50)
            disconnect: Callable[[], Awaitable[None]] = client.disconnect
            return disconnect

        return await _drain_common(self.cfg, consume)


# ---- paho ------------------------------------------------------------------- #
def _paho_connect_props(receive_maximum: int | None) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


def _paho_client(cfg: WorkerConfig, manual_ack: bool) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=cfg.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )


def paho_blocking_setup(cfg: WorkerConfig) -> None:
    """Create the persistent session + subscription with paho's own thread loop."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    client = _paho_client(cfg, manual_ack=False)
    subscribed = threading.Event()
    disconnected = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_disconnect = lambda *_a: disconnected.set()
    client.connect(HOST, cfg.port, clean_start=True, properties=_paho_connect_props(cfg.receive_maximum))
    client.loop_start()
    client.subscribe((SHARED_FILTER, SubscribeOptions(qos=1)))
    if not subscribed.wait(10):
        raise RuntimeError("paho: no SUBACK")
    client.disconnect()
    disconnected.wait(10)
    client.loop_stop()


class PahoAsyncioHelper:
    """Drive a paho client from asyncio (after paho's examples/loop_asyncio.py)."""

    def __init__(self, client: Any, burst: bool, state: DrainState | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.burst = burst
        self.state = state
        self.misc: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        client.on_socket_open = self.on_socket_open
        client.on_socket_close = self.on_socket_close
        client.on_socket_register_write = self.on_socket_register_write
        client.on_socket_unregister_write = self.on_socket_unregister_write

    def _read(self) -> None:
        if not self.burst or self.state is None:
            self.client.loop_read()
            return
        # loop_read() handles at most one packet per call here; keep reading while
        # the previous call delivered a message (public API only).
        for _ in range(256):
            before = self.state.received
            self.client.loop_read()
            if self.state.received == before:
                break

    def on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        self.loop.add_reader(sock, self._read)
        self.misc = self.loop.create_task(self.misc_loop())

    def on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self.loop.remove_reader(sock)
        if self.misc is not None:
            self.misc.cancel()
        self.closed.set()

    def on_socket_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def on_socket_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self.loop.remove_writer(sock)

    async def misc_loop(self) -> None:
        import paho.mqtt.client as mqtt

        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(1)


class PahoAsyncioImpl:
    def __init__(self, cfg: WorkerConfig, variant: Variant) -> None:
        self.cfg = cfg
        self.variant = variant

    async def setup(self) -> None:
        paho_blocking_setup(self.cfg)

    async def drain(self) -> dict[str, Any]:
        client = _paho_client(self.cfg, manual_ack=True)

        def make_on_commit(state: DrainState) -> Callable[[list[Any]], None]:
            def on_commit(mids: list[int]) -> None:
                for mid in mids:
                    client.ack(mid, 1)
                state.on_acked(len(mids))

            return on_commit

        async def consume(state: DrainState, batcher: Batcher) -> Callable[[], Awaitable[None]]:
            helper = PahoAsyncioHelper(client, self.variant.burst_reads, state)

            def on_message(_c: Any, _u: Any, msg: Any) -> None:
                state.on_payload(msg.payload)
                batcher.add(msg.mid)

            client.on_message = on_message
            client.connect(
                HOST,
                self.cfg.port,
                clean_start=False,
                properties=_paho_connect_props(self.cfg.receive_maximum),
            )

            async def disconnect() -> None:
                client.disconnect()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(helper.closed.wait(), 5)

            return disconnect

        return await _drain_common(self.cfg, consume, make_on_commit)


class PahoThreadImpl:
    def __init__(self, cfg: WorkerConfig, variant: Variant) -> None:
        self.cfg = cfg
        self.variant = variant

    async def setup(self) -> None:
        paho_blocking_setup(self.cfg)

    async def drain(self) -> dict[str, Any]:
        client = _paho_client(self.cfg, manual_ack=True)
        loop = asyncio.get_running_loop()
        inbox: list[tuple[bytes, int]] = []
        lock = threading.Lock()

        def make_on_commit(state: DrainState) -> Callable[[list[Any]], None]:
            def on_commit(mids: list[int]) -> None:
                for mid in mids:
                    client.ack(mid, 1)  # thread-safe enqueue; paho thread writes
                state.on_acked(len(mids))

            return on_commit

        async def consume(state: DrainState, batcher: Batcher) -> Callable[[], Awaitable[None]]:
            def take_inbox() -> None:  # runs on the asyncio thread
                with lock:
                    items = inbox[:]
                    inbox.clear()
                for payload, mid in items:
                    state.on_payload(payload)
                    batcher.add(mid)

            def on_message(_c: Any, _u: Any, msg: Any) -> None:  # runs on paho's thread
                with lock:
                    inbox.append((msg.payload, msg.mid))
                    first = len(inbox) == 1
                if first:  # one wake-up per burst, not per message
                    loop.call_soon_threadsafe(take_inbox)

            client.on_message = on_message
            client.connect(
                HOST,
                self.cfg.port,
                clean_start=False,
                properties=_paho_connect_props(self.cfg.receive_maximum),
            )
            client.loop_start()

            async def disconnect() -> None:
                client.disconnect()
                await loop.run_in_executor(None, client.loop_stop)

            return disconnect

        return await _drain_common(self.cfg, consume, make_on_commit)


# ---- aiomqtt ---------------------------------------------------------------- #
class AiomqttImpl:
    def __init__(self, cfg: WorkerConfig, variant: Variant) -> None:
        self.cfg = cfg
        self.variant = variant

    def _client(self, clean: bool) -> Any:
        import aiomqtt

        return aiomqtt.Client(
            HOST,
            self.cfg.port,
            identifier=self.cfg.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=clean,  # NB: the default (CLEAN_START_FIRST_ONLY) wipes the session
            properties=_paho_connect_props(self.cfg.receive_maximum),
        )

    async def setup(self) -> None:
        async with self._client(clean=True) as client:
            await client.subscribe(SHARED_FILTER, qos=1)

    async def drain(self) -> dict[str, Any]:
        client = self._client(clean=False)
        private_ack = self.variant.deferred_ack
        if private_ack:
            # Unsupported: reach into the wrapped paho client BEFORE connecting,
            # otherwise the backlog that arrives right after CONNACK is auto-acked.
            client._client.manual_ack_set(True)

        def make_on_commit(state: DrainState) -> Callable[[list[Any]], None]:
            def on_commit(mids: list[int]) -> None:
                if private_ack:
                    for mid in mids:
                        client._client.ack(mid, 1)
                state.on_acked(len(mids))

            return on_commit

        async def consume(state: DrainState, batcher: Batcher) -> Callable[[], Awaitable[None]]:
            await client.__aenter__()

            async def reader() -> None:
                async for message in client.messages:
                    state.on_payload(message.payload)
                    batcher.add(message.mid)

            task = asyncio.create_task(reader())

            async def disconnect() -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await client.__aexit__(None, None, None)

            return disconnect

        return await _drain_common(self.cfg, consume, make_on_commit)


# ---- the worker's own client (ingest.sources.mqtt) ---------------------------------- #
class OwnImpl:
    def __init__(self, cfg: WorkerConfig, variant: Variant) -> None:
        self.cfg = cfg
        self.variant = variant

    def _source(self, sink: Callable[[Sequence[tuple[str, bytes, Any]], Hashable], None]) -> Any:
        from ingest.config import MqttConfig
        from ingest.metrics import ServiceMetrics
        from ingest.sources.mqtt import MqttSource

        class Sink:  # the source's Intake: every read's messages to `sink`
            def on_messages(self, source: Any, epoch: Hashable, messages: Sequence[Any]) -> None:
                sink(messages, epoch)

            def on_rejected(self, *_a: Any) -> None:
                raise AssertionError("the benchmark's messages are all valid MQTT")

        mc = MqttConfig(
            url=f"mqtt://{HOST}:{self.cfg.port}",
            client_id=self.cfg.client_id,
            session_expiry_s=SESSION_EXPIRY_S,
            receive_maximum=self.cfg.receive_maximum or 65535,
        )
        return MqttSource(mc, Sink(), ServiceMetrics())

    async def setup(self) -> None:
        """Subscribe, then go as a crashed worker goes, so the session stays parked
        for the backlog (a clean close() would end it)."""
        source = self._source(lambda *_a: None)
        task = asyncio.create_task(source.run())
        await asyncio.wait_for(source.wait_subscribed(), 10)
        transport = source._reading()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if transport is not None:
            transport.abort()

    async def drain(self) -> dict[str, Any]:
        holder: dict[str, Any] = {}

        def make_on_commit(state: DrainState) -> Callable[[list[Any]], None]:
            def on_commit(tokens: list[Any]) -> None:
                by_epoch: dict[Hashable, list[Any]] = {}
                for epoch, pid in tokens:
                    by_epoch.setdefault(epoch, []).append(pid)
                for epoch, pids in by_epoch.items():
                    holder["source"].ack(epoch, pids)  # all PUBACKs of the batch in one write
                state.on_acked(len(tokens))

            return on_commit

        async def consume(state: DrainState, batcher: Batcher) -> Callable[[], Awaitable[None]]:
            def sink(messages: Sequence[tuple[str, bytes, Any]], epoch: Hashable) -> None:
                for _, payload, pid in messages:
                    state.on_payload(payload)
                    batcher.add((epoch, pid))

            source = holder["source"] = self._source(sink)
            task = asyncio.create_task(source.run())

            async def disconnect() -> None:
                await source.close()
                await asyncio.wait_for(task, 10)

            return disconnect

        return await _drain_common(self.cfg, consume, make_on_commit)


Impl = GmqttImpl | PahoAsyncioImpl | PahoThreadImpl | AiomqttImpl | OwnImpl
IMPLS: dict[str, type[Impl]] = {
    "own": OwnImpl,
    "own-uvloop": OwnImpl,
    "gmqtt": GmqttImpl,
    "paho-asyncio": PahoAsyncioImpl,
    "paho-thread": PahoThreadImpl,
    "aiomqtt": AiomqttImpl,
}


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker_main(cfg_json: str) -> int:
    """Subprocess entry point: setup, print ready, wait for 'go', drain, print result."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    cfg = WorkerConfig(**json.loads(cfg_json))
    variant = VARIANTS[cfg.variant]
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if variant.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    impl = IMPLS[variant.lib](cfg, variant)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(impl.setup())
        _emit({"event": "ready"})
        if sys.stdin.readline().strip() != "go":
            return 1
        result = runner.run(impl.drain())
    _emit({"event": "result", **result})
    return 0


# --------------------------------------------------------------------------- #
# Orchestrator side
# --------------------------------------------------------------------------- #
class ProcessRegistry:
    """Every subprocess we start, so that all of them are stopped on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []
        self.lock = threading.Lock()

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(args, **kwargs)
        with self.lock:
            self.procs.append(proc)
        return proc

    def forget_finished(self) -> None:
        with self.lock:
            self.procs = [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        with self.lock:
            procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


REGISTRY = ProcessRegistry()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def broker_config(port: int, max_inflight: int | None) -> str:
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        "persistence false",
        # Default 1000 silently drops QoS 1 messages for a slow/offline session.
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    # max_inflight_messages (default 20) is the window for v3.1.1 clients and for
    # v5 clients that send no Receive Maximum; a v5 client's CONNECT Receive
    # Maximum replaces it for that client (mosquitto >= 2.0.10 also on takeover).
    if max_inflight is not None:
        lines.append(f"max_inflight_messages {max_inflight}")
    return "\n".join(lines) + "\n"


class Broker:
    """A private mosquitto on a free 127.0.0.1 port."""

    def __init__(self, workdir: Path, max_inflight: int | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="broker-", dir=workdir))
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(broker_config(self.port, max_inflight))
        self.conf.chmod(0o644)
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[Any] | None = None

    def __enter__(self) -> Broker:
        log = open(self.log_path, "wb")  # inherited by the broker
        self.proc = REGISTRY.popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()}")
            with socket.socket() as s:
                if s.connect_ex((HOST, self.port)) == 0:
                    return self
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            terminate(self.proc)
        REGISTRY.forget_finished()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def payload_line(i: int, devices: int) -> str:
    """~200-byte realistic charger telemetry record, single line."""
    d = i % devices
    return (
        f'{{"seq":{i},"device":"dev{d}","ts":{1732406400000 + i * 10},"state":"charging",'
        f'"connector":{1 + d % 2},"voltage_v":{228 + (i % 50) / 10:.1f},'
        f'"current_a":{16 + (i % 700) / 100:.2f},"power_w":{3600 + i % 1000:.1f},'
        f'"energy_kwh":{(i % 100000) / 1000:.3f},"soc_pct":{i % 101},'
        f'"temp_c":{25 + (i % 200) / 10:.1f},"fw":"2.4.1","err":0}}'
    )


@dataclass
class Backlog:
    """Pre-generated mosquitto_pub input files for N messages."""

    n: int
    devices: int
    files: list[tuple[str, Path]] = field(default_factory=list)  # (topic, path)
    avg_payload_bytes: float = 0.0


def make_backlog(workdir: Path, n: int, devices: int) -> Backlog:
    out = Path(tempfile.mkdtemp(prefix=f"backlog-{n}-", dir=workdir))
    backlog = Backlog(n, devices)
    total = 0
    for d in range(min(devices, n)):
        lines = [payload_line(i, devices) for i in range(d, n, devices)]
        total += sum(len(x) for x in lines)
        for c in range(0, len(lines), MAX_LINES_PER_PUB):
            path = out / f"dev{d}-{c // MAX_LINES_PER_PUB}.txt"
            path.write_text("\n".join(lines[c : c + MAX_LINES_PER_PUB]) + "\n")
            backlog.files.append((f"gz/v1/charger/dev{d}/telemetry", path))
    backlog.avg_payload_bytes = total / n
    return backlog


def publish(backlog: Backlog, port: int, parallel: int) -> float:
    """Publish the backlog at QoS 1 with parallel mosquitto_pub -l processes."""

    def one(item: tuple[str, Path]) -> int:
        topic, path = item
        with open(path, "rb") as f:
            proc = REGISTRY.popen(
                [MOSQUITTO_PUB, "-h", HOST, "-p", str(port), "-q", "1", "-t", topic, "-l"],
                stdin=f,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"mosquitto_pub failed ({proc.returncode}): {err!r}")
        return proc.returncode

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, backlog.files))
    REGISTRY.forget_finished()
    return time.perf_counter() - t0


def sub_args(port: int, client_id: str, receive_maximum: int | None) -> list[str]:
    args = [
        MOSQUITTO_SUB,
        "-h",
        HOST,
        "-p",
        str(port),
        "-V",
        "5",
        "-c",
        "-x",
        str(SESSION_EXPIRY_S),
        "-i",
        client_id,
        "-q",
        "1",
        "-t",
        SHARED_FILTER,
    ]
    if receive_maximum is not None:
        # libmosquitto v5 clients otherwise advertise Receive Maximum 20
        args += ["-D", "CONNECT", "receive-maximum", str(receive_maximum)]
    return args


def count_seqs(path: Path, n: int) -> tuple[int, int, int]:
    """(received, unique, duplicates) from a mosquitto_sub -F %p output file."""
    seen = bytearray(n)
    received = unique = dups = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            received += 1
            seq = orjson.loads(line)["seq"]
            if seen[seq]:
                dups += 1
            else:
                seen[seq] = 1
                unique += 1
    return received, unique, dups


def leftover_unacked(port: int, client_id: str, workdir: Path) -> int:
    """Resume the session; anything delivered now was never PUBACKed."""
    out = workdir / f"leftover-{client_id}.txt"
    with open(out, "wb") as f:
        proc = REGISTRY.popen(
            [*sub_args(port, client_id, 65535), "-W", "1", "-F", "%p"], stdout=f, stderr=subprocess.DEVNULL
        )
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    REGISTRY.forget_finished()
    count = sum(1 for line in out.read_bytes().splitlines() if line.strip())
    out.unlink()
    return count


def run_mosquitto_sub(
    port: int,
    client_id: str,
    n: int,
    receive_maximum: int | None,
    workdir: Path,
    stall_timeout_s: float,
    backlog: Backlog,
    parallel: int,
) -> dict[str, Any]:
    setup = subprocess.run(
        [*sub_args(port, client_id, receive_maximum), "-E"], capture_output=True, timeout=15
    )
    if setup.returncode != 0:
        raise RuntimeError(f"mosquitto_sub setup failed: {setup.stderr!r}")
    pub_s = publish(backlog, port, parallel)
    out = workdir / f"drain-{client_id}.txt"
    with open(out, "wb") as f:
        t0 = time.perf_counter()
        drain_args = [*sub_args(port, client_id, receive_maximum), "-C", str(n), "-F", "%p"]
        proc = REGISTRY.popen(drain_args, stdout=f, stderr=subprocess.DEVNULL)
        killer = threading.Timer(stall_timeout_s + n / 5000, proc.kill)
        killer.start()
        _, status, rusage = os.wait4(proc.pid, 0)
        t1 = time.perf_counter()
        killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    REGISTRY.forget_finished()
    received, unique, dups = count_seqs(out, n)
    out.unlink()
    return {
        "elapsed_s": t1 - t0,
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "received": received,
        "unique": unique,
        "duplicates": dups,
        "missing": n - unique,
        "bad_payloads": 0,
        "acked": received,
        "timed_out": proc.returncode != 0,
        "batches": None,
        "size_flushes": None,
        "timer_flushes": None,
        "publish_s": pub_s,
    }


def run_worker(
    cfg: WorkerConfig, port: int, backlog: Backlog, parallel: int, workdir: Path
) -> dict[str, Any]:
    err_path = workdir / f"worker-{cfg.client_id}.err"
    with open(err_path, "wb") as err:
        proc = REGISTRY.popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(cfg))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdin is not None and proc.stdout is not None

    def read_event(timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            proc.wait()
            tail = err_path.read_text()[-3000:]
            raise RuntimeError(f"worker {cfg.variant} gave no answer: {tail}")
        return dict(json.loads(line))

    try:
        read_event(60)  # ready: session + subscription exist, client disconnected
        pub_s = publish(backlog, port, parallel)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = read_event(cfg.stall_timeout_s + 60 + cfg.messages / 2000)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        REGISTRY.forget_finished()
    result.pop("event", None)
    result["publish_s"] = pub_s
    err_text = err_path.read_text(errors="replace").strip()
    if err_text:
        result["worker_stderr_tail"] = err_text[-1500:]
    err_path.unlink()
    return result


@dataclass
class RunSpec:
    variant: str
    kind: str  # "main" | "sweep"
    receive_maximum: int | None
    messages: int
    broker_max_inflight: int | None


def calibrate() -> float:
    """µs per orjson.loads of one payload: a yardstick for how loaded the machine is."""
    payload = payload_line(123, 1000).encode()
    t0 = time.process_time()
    for _ in range(20_000):
        orjson.loads(payload)
    return (time.process_time() - t0) / 20_000 * 1e6


def execute(
    spec: RunSpec, args: argparse.Namespace, backlogs: dict[int, Backlog], workdir: Path
) -> dict[str, Any]:
    variant = VARIANTS[spec.variant]
    calib_us = calibrate()
    load1 = os.getloadavg()[0]
    client_id = f"ingest-{spec.variant}-{uuid.uuid4().hex[:8]}"
    backlog = backlogs[spec.messages]
    with Broker(workdir, spec.broker_max_inflight) as broker:
        if variant.lib == "mosquitto_sub":
            result = run_mosquitto_sub(
                broker.port,
                client_id,
                spec.messages,
                spec.receive_maximum,
                workdir,
                args.stall_timeout,
                backlog,
                args.publishers,
            )
        else:
            cfg = WorkerConfig(
                variant=spec.variant,
                port=broker.port,
                client_id=client_id,
                messages=spec.messages,
                receive_maximum=spec.receive_maximum,
                batch_size=args.batch_size,
                batch_age_s=args.batch_age_ms / 1000,
                commit_s=args.commit_ms / 1000,
                stall_timeout_s=args.stall_timeout,
            )
            result = run_worker(cfg, broker.port, backlog, args.publishers, workdir)
        result["unacked_left"] = leftover_unacked(broker.port, client_id, workdir)
        tail = broker.log_tail().strip()
        if tail:
            result["broker_log_tail"] = tail
    n = spec.messages
    result.update(
        variant=spec.variant,
        kind=spec.kind,
        receive_maximum=spec.receive_maximum,
        broker_max_inflight=spec.broker_max_inflight,
        messages=n,
        msgs_per_s=result["unique"] / result["elapsed_s"] if result["elapsed_s"] else 0.0,
        cpu_us_per_msg=1e6 * result["cpu_s"] / max(result["received"], 1),
        meets_requirement=variant.meets_requirement,
        calib_orjson_us=calib_us,
        loadavg_1m=load1,
    )
    return result


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, Any, Any, int], list[dict[str, Any]]] = {}
    for r in runs:
        key = (r["kind"], r["variant"], r["receive_maximum"], r["broker_max_inflight"], r["messages"])
        groups.setdefault(key, []).append(r)
    summary = []
    for (kind, name, rm, bmi, n), rs in groups.items():

        def med(k: str, rs: list[dict[str, Any]] = rs) -> float | None:
            vals = [r[k] for r in rs if r.get(k) is not None]
            return statistics.median(vals) if vals else None

        summary.append(
            {
                "kind": kind,
                "variant": name,
                "receive_maximum": rm,
                "broker_max_inflight": bmi,
                "messages": n,
                "runs": len(rs),
                "msgs_per_s_median": med("msgs_per_s"),
                "msgs_per_s_min": min(r["msgs_per_s"] for r in rs),
                "msgs_per_s_max": max(r["msgs_per_s"] for r in rs),
                "cpu_us_per_msg_median": med("cpu_us_per_msg"),
                "duplicates_total": sum(r["duplicates"] for r in rs),
                "missing_total": sum(r["missing"] for r in rs),
                "unacked_left_total": sum(r["unacked_left"] for r in rs),
                "timed_out_runs": sum(1 for r in rs if r["timed_out"]),
                "timer_flushes_median": med("timer_flushes"),
                "max_unacked_median": med("max_unacked"),
                "batches_median": med("batches"),
                "calib_orjson_us_median": med("calib_orjson_us"),
                "loadavg_1m_median": med("loadavg_1m"),
                "meets_requirement": VARIANTS[name].meets_requirement,
                "note": VARIANTS[name].note,
            }
        )
    return summary


def fmt_table(summary: list[dict[str, Any]]) -> str:
    head = (
        f"{'kind':5} {'variant':28} {'RM':>6} {'N':>7} {'msgs/s':>9} {'µs CPU/msg':>10} "
        f"{'dup':>4} {'miss':>5} {'unacked':>7} {'timer/batches':>13} {'maxUnack':>8}  "
        "ack-after-commit"
    )
    lines = [head, "-" * len(head)]
    for s in summary:
        rm = "none" if s["receive_maximum"] is None else str(s["receive_maximum"])
        tb = (
            "-"
            if s["batches_median"] is None
            else f"{s['timer_flushes_median']:.0f}/{s['batches_median']:.0f}"
        )
        mu = "-" if s.get("max_unacked_median") is None else f"{s['max_unacked_median']:.0f}"
        rate = s["msgs_per_s_median"] or 0.0
        cpu = s["cpu_us_per_msg_median"] or 0.0
        flag = s["meets_requirement"] + (" TIMEOUT" if s["timed_out_runs"] else "")
        lines.append(
            f"{s['kind']:5} {s['variant']:28} {rm:>6} {s['messages']:>7} {rate:>9,.0f} "
            f"{cpu:>10.1f} "
            f"{s['duplicates_total']:>4} {s['missing_total']:>5} {s['unacked_left_total']:>7} "
            f"{tb:>13} {mu:>8}  {flag}"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    for pkg in ("gmqtt", "paho-mqtt", "aiomqtt", "uvloop", "orjson"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    try:
        out["mosquitto"] = subprocess.run(
            [MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5
        ).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        out["mosquitto"] = "unknown"
    return out


def parse_windows(text: str) -> list[int | None]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part:
            out.append(None if part == "none" else int(part))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Variants: " + "; ".join(f"{v.name}: {v.note}" for v in VARIANTS.values()),
    )
    p.add_argument("--messages", type=int, default=200_000, help="backlog size per run (default 200000)")
    p.add_argument("--runs", type=int, default=3, help="runs per main variant; medians reported (default 3)")
    p.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help="comma-separated variants for the main table (default: all)",
    )
    p.add_argument(
        "--receive-maximum",
        type=int,
        default=65535,
        help="MQTT v5 Receive Maximum sent by subscribers in the main table (default 65535)",
    )
    p.add_argument("--batch-size", type=int, default=5000, help="messages per batch (default 5000)")
    p.add_argument("--batch-age-ms", type=float, default=50.0, help="max batch age (default 50 ms)")
    p.add_argument("--commit-ms", type=float, default=5.0, help="simulated commit time (default 5 ms)")
    p.add_argument(
        "--sweep-variants",
        default=",".join(DEFAULT_SWEEP_VARIANTS),
        help="variants for the Receive Maximum sweep ('' to skip)",
    )
    p.add_argument(
        "--sweep-windows",
        default=DEFAULT_WINDOWS,
        help="Receive Maximum values for the sweep; 'none' = property not sent, "
        "broker max_inflight_messages left at its default (20)",
    )
    p.add_argument("--sweep-runs", type=int, default=1, help="runs per sweep point (default 1)")
    p.add_argument("--devices", type=int, default=1000, help="distinct device topics (default 1000)")
    p.add_argument("--publishers", type=int, default=32, help="parallel mosquitto_pub processes (default 32)")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=10.0,
        help="give up a drain after this many seconds without progress (default 10)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def sweep_messages(n: int, window: int | None, batch_size: int) -> int:
    """Keep timer-bound sweep points short: ~100 batch-age periods."""
    w = 20 if window is None else window
    if w >= batch_size:
        return n
    return min(n, max(2000, w * 100))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)

    main_variants = [v for v in args.variants.split(",") if v]
    sweep_variants = [v for v in args.sweep_variants.split(",") if v]
    for v in main_variants + sweep_variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    windows = parse_windows(args.sweep_windows)

    specs: list[RunSpec] = []
    for _ in range(args.runs):  # interleave variants so drift affects all alike
        specs += [RunSpec(v, "main", args.receive_maximum, args.messages, None) for v in main_variants]
    for _ in range(args.sweep_runs):
        for v in sweep_variants:
            for w in windows:
                if w == args.receive_maximum and v in main_variants:
                    continue  # already measured in the main table
                n = sweep_messages(args.messages, w, args.batch_size)
                specs.append(RunSpec(v, "sweep", w, n, None))

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="mqtt-bench-"))
    runs: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    try:
        sizes = sorted({s.messages for s in specs})
        backlogs = {n: make_backlog(workdir, n, args.devices) for n in sizes}
        for i, spec in enumerate(specs, 1):
            result = execute(spec, args, backlogs, workdir)
            runs.append(result)
            rm = "none" if spec.receive_maximum is None else spec.receive_maximum
            elapsed = time.perf_counter() - t_start
            print(
                f"[{i}/{len(specs)} {elapsed:5.0f}s] {spec.kind} {spec.variant} "
                f"RM={rm} N={spec.messages}: {result['msgs_per_s']:,.0f} msgs/s, "
                f"{result['cpu_us_per_msg']:.1f} µs/msg, dup={result['duplicates']} "
                f"missing={result['missing']} unacked_left={result['unacked_left']} "
                f"timer_flushes={result['timer_flushes']} (publish {result['publish_s']:.1f}s, "
                f"load {result['loadavg_1m']:.1f}, orjson {result['calib_orjson_us']:.2f} µs)",
                flush=True,
            )
    finally:
        REGISTRY.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs)
    print()
    print(fmt_table(summary))
    any_backlog = next(iter(backlogs.values()))
    doc = {
        "measured": "drain of a queued QoS 1 persistent session; PUBACK after simulated batch commit",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": time.perf_counter() - t_start,
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "params": {
            "messages": args.messages,
            "runs": args.runs,
            "receive_maximum": args.receive_maximum,
            "batch_size": args.batch_size,
            "batch_age_ms": args.batch_age_ms,
            "commit_ms": args.commit_ms,
            "devices": args.devices,
            "publishers": args.publishers,
            "topic_filter": SHARED_FILTER,
            "session_expiry_s": SESSION_EXPIRY_S,
            "avg_payload_bytes": any_backlog.avg_payload_bytes,
            "broker_config_example": broker_config(0, None),
        },
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
