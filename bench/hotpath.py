"""Where one worker's CPU goes, stage by stage, in one process.

Runs the worker's own code on the benchmark's realistic messages, without a broker:
the MQTT parser over the PUBLISH byte stream, dispatch + decode, batching, the
registry check, the COPY of each batch into a scratch database on the local
PostgreSQL (this process's CPU, with PostgreSQL's own printed beside it), the PUBACK
encoding, and the whole intake as the worker runs it. Prints CPU µs per message for
each stage (best of --repeat runs).

    python -m bench.hotpath [--messages N] [--repeat R] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from adapters import ADAPTERS, CLASSES
from bench.messages import generate
from bench.run import CpuMeter, stat_fields
from ingest import config
from ingest.batch import Batch
from ingest.dispatch import Dispatcher
from ingest.metrics import ServiceMetrics
from ingest.migrate import migrate
from ingest.pipeline import Pipeline
from ingest.registry import RegistryCache
from ingest.sources import mqtt_wire as wire
from ingest.sources.memory import MemorySource
from ingest.writer import Writer

CHUNK = 65536  # bytes per socket read


async def _no_db() -> Any:
    raise RuntimeError("no database in this measurement")


def stream(msgs: list[tuple[str, bytes]]) -> list[bytes]:
    data = b"".join(wire.publish(t, p, i % 65535 + 1) for i, (t, p) in enumerate(msgs))
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


async def copy_cost(url: str, batches: list[Batch], repeat: int) -> tuple[float, float]:
    """(client CPU, server CPU) seconds of writing the batches, best run by client CPU."""
    admin = await asyncpg.connect(url)
    name = "ingest_hotpath_bench"
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/" + name)
        await migrate(conn, use_timescale=False)
        writer = Writer(CLASSES)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = int(stat_fields(backend)[1])
        times = []
        for _ in range(repeat):
            await conn.execute(
                "TRUNCATE readings_reservoir, readings_power_line, readings_charger, "
                "readings_datacenter, state_events, devices"
            )
            server = CpuMeter(postmaster)
            t0 = time.process_time()
            for b in batches:
                await writer.write(conn, b, [])
            times.append((time.process_time() - t0, server.used()))
        await conn.close()
        return min(times)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2000, help="messages per batch (default 2000)")
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args(argv)
    msgs = generate(args.messages)
    n = len(msgs)
    chunks = stream(msgs)
    now = datetime.now(UTC)
    stages: dict[str, float] = {}

    def parse() -> list[wire.Message]:
        p = wire.Parser()
        out: list[wire.Message] = []
        for c in chunks:
            out += p.feed(c)[0]
        return out

    parsed = parse()
    assert len(parsed) == n
    stages["MQTT parse"] = best(parse, args.repeat)

    dispatcher = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))

    def decode() -> None:
        for t, p, _ in parsed:  # results dropped: the worker keeps one batch, not all
            dispatcher.decode(t, p, now)

    stages["decode (dispatch + adapter)"] = best(decode, args.repeat)
    decoded = [dispatcher.decode(t, p, now) for t, p, _ in parsed]

    def batching(automated: dict[str, datetime], classes: dict[str, str] | None = None) -> list[Batch]:
        known = classes or {}
        out, b = [], Batch(0.0, automated=automated, classes=known)
        toks = b.tokens(None, 1)
        for i, d in enumerate(decoded):
            b.add(d, now)
            toks.append(i)
            if b.messages >= args.batch:
                out.append(b)
                b = Batch(0.0, automated=automated, classes=known)
                toks = b.tokens(None, 1)
        if b.messages:
            out.append(b)
        return out

    # The steady state: the registry has committed every device once (a worker that
    # has run for a while), so the batches know which devices are automated already.
    warm = RegistryCache(timedelta(seconds=30))
    for b in batching({}):
        warm.committed(warm.due(b.devices))
    stages["batch.add"] = best(lambda: batching(warm.automated, warm.classes), args.repeat)
    batches = batching(warm.automated, warm.classes)

    def registry() -> None:
        r = RegistryCache(timedelta(seconds=30))
        for b in batches:
            r.committed(r.due(b.devices))

    stages["registry due/committed"] = best(registry, args.repeat)
    client, server = asyncio.run(copy_cost(args.database_url, batches, args.repeat))
    stages["COPY (client side)"] = client
    ids = [pid for _, _, pid in parsed]
    stages["PUBACK encoding"] = best(
        lambda: [wire.pubacks(ids[i : i + args.batch]) for i in range(0, n, args.batch)], args.repeat
    )
    total = sum(stages.values())

    def intake() -> None:
        """Parser and Pipeline.on_messages as the worker runs them, the batches it
        queues dropped as they come (no writer)."""

        async def go() -> None:
            pipe = Pipeline(config.load(env={}), _no_db, ServiceMetrics())
            pipe.registry.automated.update(warm.automated)
            pipe.registry.classes.update(warm.classes)
            parser = wire.Parser()
            source = MemorySource(pipe)
            ready = pipe.core.ready
            for c in chunks:
                pipe.on_messages(source, 1, parser.feed(c)[0])
                ready.clear()
            pipe.flush()

        asyncio.run(go())

    whole = best(intake, args.repeat)
    print(f"{n:,} messages, {sum(b.row_count for b in batches):,} rows, batches of {args.batch}")
    print(f"{'stage':<30}{'µs/msg':>8}{'share':>8}")
    for k, v in stages.items():
        print(f"{k:<30}{v / n * 1e6:>8.2f}{v / total:>8.0%}")
    print(f"{'total':<30}{total / n * 1e6:>8.2f}")
    print(f"PostgreSQL's own CPU for the same COPYs (all its processes): {server / n * 1e6:.2f} µs/msg")
    print(
        "intake as the worker runs it (parse + Pipeline.on_messages, no writer):"
        f" {whole / n * 1e6:.2f} µs/msg"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
