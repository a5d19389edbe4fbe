"""A fast QoS 1 publisher for benchmarks: pre-encoded PUBLISH packets written over
one MQTT 5 connection per process, a window of unacknowledged messages, optional
pacing. Several processes outrun one broker core."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Sequence

from ingest.sources import mqtt_wire as wire


async def keep_pace(writer: asyncio.StreamWriter, sent: int, rate: float, t0: float) -> None:
    """Flush the socket; with a rate (msgs/s), wait until `sent` messages are due."""
    await writer.drain()
    if rate:
        ahead = sent / rate - (time.perf_counter() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def _publish(
    port: int, msgs: Sequence[tuple[str, bytes]], client_id: str, rate: float, window: int
) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(wire.connect(client_id, 60, True, 0, 65535))
    parser = wire.Parser()
    acked = 0
    inflight: set[int] = set()
    got_connack = asyncio.Event()
    space = asyncio.Event()
    space.set()
    done = asyncio.Event()
    total = len(msgs)

    async def read() -> None:
        nonlocal acked
        while True:
            data = await reader.read(65536)
            if not data:
                return
            _, events = parser.feed(data)
            for ev in events:
                if isinstance(ev, wire.ConnAck):
                    got_connack.set()
                elif isinstance(ev, wire.PubAck):
                    inflight.discard(ev.packet_id)
                    acked += 1
            if len(inflight) < window:
                space.set()
            if acked >= total:
                done.set()

    rt = asyncio.create_task(read())
    await got_connack.wait()
    t0 = time.perf_counter()
    pid = 0
    # Messages that can make their own packet (bench.live) skip the encoding.
    packet = getattr(msgs, "packet", None)
    for i in range(total):
        pid = pid % 65535 + 1
        while len(inflight) >= window:
            space.clear()
            await space.wait()
        inflight.add(pid)
        if packet is not None:
            writer.write(packet(i, pid))
        else:
            topic, payload = msgs[i]
            writer.write(wire.publish(topic, payload, pid))
        if i % 256 == 255:
            await keep_pace(writer, i + 1, rate, t0)
    await writer.drain()
    if total:
        await done.wait()
    elapsed = time.perf_counter() - t0
    writer.write(wire.DISCONNECT_PACKET)
    writer.close()
    rt.cancel()
    return elapsed


def _run(
    port: int, msgs: list[tuple[str, bytes]], client_id: str, rate: float, window: int, q: mp.Queue[float]
) -> None:
    q.put(asyncio.run(_publish(port, msgs, client_id, rate, window)))


def publish(
    port: int, msgs: list[tuple[str, bytes]], processes: int = 2, rate: float = 0.0, window: int = 1000
) -> float:
    """Publish all messages (split over processes); returns the wall time until the
    broker acknowledged the last one. `rate` is the total messages/s (0 = flat out)."""
    q: mp.Queue[float] = mp.Queue()
    parts = [msgs[i::processes] for i in range(processes)]
    t0 = time.perf_counter()
    procs = [
        mp.Process(target=_run, args=(port, p, f"bench-pub-{i}", rate / processes, window, q))
        for i, p in enumerate(parts)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - t0
