"""A fast MQTT 3.1.1 QoS 1 publisher for the clustered engines (RabbitMQ 3.10's and
NATS 2.9's MQTT listeners speak 3.1.1 only; bench.publisher speaks MQTT 5): packets
encoded by hand, a window of unacknowledged messages, and the ids the broker PUBACKed,
so that a durability run can tell which accepted messages must survive."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.publisher import keep_pace
from ingest.sources import mqtt_wire as wire


def _str(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    body = _str(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _str(client_id.encode())
    return b"\x10" + wire.varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _str(topic.encode()) + struct.pack("!H", packet_id) + payload
    return b"\x32" + wire.varint(len(body)) + body


@dataclass
class Published:
    """What one publisher sent and what the broker acknowledged (indices into msgs)."""

    sent: int = 0
    acked: list[int] = field(default_factory=list)
    elapsed: float = 0.0
    error: str = ""


async def publish(
    port: int,
    msgs: Sequence[tuple[str, bytes]],
    client_id: str,
    window: int = 500,
    rate: float = 0.0,
    host: str = "127.0.0.1",
    connect_tries: int = 60,
    connack_timeout_s: float = 10.0,
    stall_s: float = 30.0,
) -> Published:
    """Publish `msgs` at QoS 1; stops at the end, when the connection drops, or when no
    PUBACK has come for `stall_s` with messages in flight (`error` says which)."""
    out = Published()
    for attempt in range(connect_tries):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(connect_packet(client_id))
        try:
            head = await asyncio.wait_for(reader.readexactly(4), connack_timeout_s)
        except asyncio.IncompleteReadError:
            head = b""
        except TimeoutError:
            head = b"silent"
        if head[:1] == b"\x20" and head[3:4] == b"\x00":
            break
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        # 0x03 "server unavailable": RabbitMQ 3.10's MQTT plugin says so when it cannot
        # register the client id in time (a loaded or recovering cluster), and in a
        # full-suite run it once sent no CONNACK at all: devices retry both
        retry = head == b"silent" or head[3:4] == b"\x03"
        if not retry or attempt == connect_tries - 1:
            why = {b"": "closed before CONNACK", b"silent": f"no CONNACK in {connack_timeout_s:g} s"}
            raise ConnectionError(
                f"port {port} refused the connection: {why.get(head, f'CONNACK {head.hex()}')}"
            )
        await asyncio.sleep(0.5)
    if not msgs:
        writer.write(b"\xe0\x00")
        writer.close()
        return out
    inflight: dict[int, int] = {}
    space = asyncio.Event()
    done = asyncio.Event()
    space.set()
    total = len(msgs)

    async def read() -> None:
        buf = b""
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), stall_s)
                except TimeoutError:
                    if inflight:
                        out.error = f"no PUBACK for {stall_s:g} s with {len(inflight)} in flight"
                        break
                    continue
                if not data:
                    break
                buf += data
                n = len(buf) - len(buf) % 4
                for i in range(0, n, 4):  # PUBACK / PINGRESP: 4 and 2 bytes; only PUBACKs come
                    if buf[i] == 0x40:
                        pid = (buf[i + 2] << 8) | buf[i + 3]
                        idx = inflight.pop(pid, None)
                        if idx is not None:
                            out.acked.append(idx)
                buf = buf[n:]
                if len(inflight) < window:
                    space.set()
                if len(out.acked) >= total:
                    break
        except (ConnectionError, OSError) as exc:
            out.error = str(exc) or type(exc).__name__
        done.set()
        space.set()

    rt = asyncio.create_task(read())
    t0 = time.perf_counter()
    pid = 0
    try:
        for i in range(total):
            while len(inflight) >= window and not done.is_set():
                space.clear()
                await space.wait()
            if done.is_set() or writer.is_closing():
                break
            pid = pid % 65535 + 1
            inflight[pid] = i
            topic, payload = msgs[i]
            writer.write(publish_packet(topic, payload, pid))
            out.sent = i + 1
            if i % 128 == 127:
                await keep_pace(writer, i + 1, rate, t0)
        await writer.drain()
    except (ConnectionError, OSError) as exc:
        out.error = str(exc) or type(exc).__name__
    await done.wait()
    out.elapsed = time.perf_counter() - t0
    with_close = not writer.is_closing()
    if with_close:
        writer.write(b"\xe0\x00")
        writer.close()
    rt.cancel()
    return out


async def publish_spread(
    ports: Sequence[int],
    msgs: Sequence[tuple[str, bytes]],
    tag: str,
    connections: int = 16,
    window: int = 100,
    attempt: Callable[[Callable[[], Awaitable[Published]]], Awaitable[Any]] | None = None,
) -> list[Published]:
    """`msgs` over `connections` connections at once, message i on connection
    i % connections, the connections round-robin over `ports` (a cluster's nodes), as a
    fleet of devices publishes. `attempt` runs each connection's publish (a retrying
    wrapper, say); by default it is awaited once."""
    parts = [msgs[i::connections] for i in range(connections)]

    def one(i: int) -> Callable[[], Awaitable[Published]]:
        port = ports[i % len(ports)]
        return lambda: publish(port, parts[i], f"{tag}-{i}-{time.time_ns()}", window=window)

    def once(make: Callable[[], Awaitable[Published]]) -> Awaitable[Published]:
        return make()

    run = attempt or once
    return list(await asyncio.gather(*(run(one(i)) for i in range(connections))))
