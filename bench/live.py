"""Paced publishing whose messages carry their publish time as `ts`, so that
PostgreSQL's commit timestamp minus `ts` is the publish → commit latency.

The documents are encoded before publishing starts (a few per device, with the
metrics of `bench.messages`); each message patches the current time into one of
them. Encoding each document at send time cost the publishers as much CPU as the
worker spent on it, on the same 2 cores."""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import overload

import orjson

from bench import publisher
from bench.messages import MIX, _doc
from ingest.sources import mqtt_wire as wire

_TS_WIDTH = len("2026-11-28T14:30:01.123456+00:00")
_PLACEHOLDER = b"#" * _TS_WIDTH


class LiveMessages(Sequence[tuple[str, bytes]]):
    """Message i: a pre-encoded document of device (i × parts + part) mod devices,
    stamped with the time it is asked for."""

    def __init__(self, n: int, part: int, parts: int, devices: int = 2000, variants: int = 8) -> None:
        self.n, self.part, self.parts = n, part, parts
        rnd = random.Random(part)
        classes: list[str] = []
        for cls, share in MIX:
            classes += [cls] * round(devices * share)
        self.variants = variants
        # per device and variant: the QoS 1 PUBLISH packet cut around its packet id
        # and its time stamp (the stamp has a fixed width, so the length is known)
        self.packets: list[list[tuple[bytes, bytes, bytes]]] = []
        self.topics: list[str] = []
        for d, cls in enumerate(classes):
            topic = f"gz/v1/{cls}/{cls[:2]}-{d:05d}/telemetry"
            cuts = []
            for k in range(variants):
                body = orjson.dumps({"ts": _PLACEHOLDER.decode(), "seq": k, "metrics": _doc(cls, k, rnd)})
                pkt = wire.publish(topic, body, 1)
                pid_at = len(pkt) - len(body) - 3  # packet id, the empty properties, body
                ts_at = len(pkt) - len(body) + body.index(_PLACEHOLDER)
                cuts.append((pkt[:pid_at], pkt[pid_at + 2 : ts_at], pkt[ts_at + _TS_WIDTH :]))
            self.packets.append(cuts)
            self.topics.append(topic)
        self._second = -1
        self._prefix = b""

    def _stamp(self) -> bytes:
        """The current time as RFC 3339 text with microseconds (a third of the cost
        of datetime.now().isoformat())."""
        sec, ns = divmod(time.time_ns(), 1_000_000_000)
        if sec != self._second:
            self._second = sec
            self._prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.").encode()
        return self._prefix + b"%06d+00:00" % (ns // 1000)

    def packet(self, i: int, packet_id: int) -> bytes:
        """Message i as a PUBLISH packet with `packet_id`, stamped now."""
        g = i * self.parts + self.part
        n = len(self.packets)
        head, mid, tail = self.packets[g % n][(g // n) % self.variants]
        return head + packet_id.to_bytes(2, "big") + mid + self._stamp() + tail

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> tuple[str, bytes]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[str, bytes]]: ...
    def __getitem__(self, i: int | slice) -> tuple[str, bytes] | Sequence[tuple[str, bytes]]:
        if isinstance(i, slice):
            raise TypeError("no slices")
        g = i * self.parts + self.part
        n = len(self.packets)
        head = self.packets[g % n][(g // n) % self.variants][0]
        # the payload follows the packet id and the empty properties
        return self.topics[g % n], self.packet(i, 1)[len(head) + 3 :]


def _one(port: int, n: int, part: int, parts: int, rate: float) -> None:
    import asyncio

    asyncio.run(publisher._publish(port, LiveMessages(n, part, parts), f"live-{part}", rate, 1000))


def run(port: int, n: int, rate: float, procs: int) -> None:
    ps = [mp.Process(target=_one, args=(port, n // procs, i, procs, rate / procs)) for i in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
