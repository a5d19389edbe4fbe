"""Paced publishing whose messages carry their publish time as `ts`, so that
PostgreSQL's commit timestamp minus `ts` is the publish → commit latency."""

from __future__ import annotations

import multiprocessing as mp
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import overload

import orjson

from bench import publisher
from bench.messages import MIX, _doc


class LiveMessages(Sequence[tuple[str, bytes]]):
    """Message i is made when it is asked for, stamped with the current time."""

    def __init__(self, n: int, part: int, parts: int, devices: int = 2000) -> None:
        self.n, self.part, self.parts = n, part, parts
        self.rnd = random.Random(part)
        self.classes: list[str] = []
        for cls, share in MIX:
            self.classes += [cls] * round(devices * share)

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
        d = g % len(self.classes)
        cls = self.classes[d]
        doc = {
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "seq": g,
            "metrics": _doc(cls, g, self.rnd),
        }
        return f"gz/v1/{cls}/{cls[:2]}-{d:05d}/telemetry", orjson.dumps(doc)


def _one(port: int, n: int, part: int, parts: int, rate: float) -> None:
    import asyncio

    asyncio.run(publisher._publish(port, LiveMessages(n, part, parts), f"live-{part}", rate, 1000))


def run(port: int, n: int, rate: float, procs: int) -> None:
    ps = [mp.Process(target=_one, args=(port, n // procs, i, procs, rate / procs)) for i in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
