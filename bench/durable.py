"""The durable transport's cases for bench.run: a private 3-node RabbitMQ cluster
(ingest.localcluster) holds a backlog that devices published over MQTT 3.1.1 (16
connections over the three nodes), then either the engine's own drain — our AMQP
consumer acknowledging each read as it arrives, no pipeline — or one worker
(`ingest run`, `[source] kind = "amqp"`) committing it to PostgreSQL drains it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from bench import mqtt311
from ingest.config import AmqpConfig
from ingest.localcluster import RabbitCluster, declare_queue, free_ports
from ingest.sources import Message, Source
from ingest.sources.amqp import AmqpSource

CONNECTIONS = 16
ROOT = Path(__file__).resolve().parents[1]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(cluster: RabbitCluster) -> None:
    asyncio.run(declare_queue(cluster.nodes[0].amqp_url))


def preload(cluster: RabbitCluster, msgs: Sequence[tuple[str, bytes]]) -> float:
    """Publish the backlog; returns the cluster's MQTT intake in msgs/s."""
    ports = [n.mqtt_port for n in cluster.nodes]

    async def go() -> int:
        res = await mqtt311.publish_spread(ports, msgs, "bench-dur", CONNECTIONS)
        return sum(len(r.acked) for r in res)

    t0 = time.perf_counter()
    acked = asyncio.run(go())
    if acked != len(msgs):
        raise RuntimeError(f"the cluster acknowledged {acked} of {len(msgs)} messages")
    return acked / (time.perf_counter() - t0)


class _Acker:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.got = 0
        self.first = self.last = 0.0
        self.done = asyncio.Event()

    def on_messages(self, source: Source, epoch: Hashable, messages: Sequence[Message]) -> None:
        if not self.got:
            self.first = time.perf_counter()
        self.got += len(messages)
        self.last = time.perf_counter()
        source.ack(epoch, [tok for _, _, tok in messages])
        if self.got >= self.expect:
            self.done.set()

    def on_rejected(self, *args: Any) -> None:
        pass


def engine_drain(cluster: RabbitCluster, msgs: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    intake = preload(cluster, msgs)

    async def go() -> tuple[_Acker, float]:
        acker = _Acker(len(msgs))
        src = AmqpSource(AmqpConfig(url=cluster.amqp_urls, prefetch=10000, declare=False), "gz", acker)
        t0 = time.process_time()
        task = asyncio.create_task(src.run())
        await asyncio.wait_for(acker.done.wait(), 900)
        cpu = time.process_time() - t0
        await src.stop_intake()
        await src.close()
        task.cancel()
        return acker, cpu

    acker, cpu = asyncio.run(go())
    el = acker.last - acker.first
    return {
        "messages": len(msgs),
        "msgs_per_s": acker.got / el,
        "intake_msgs_s": intake,
        "client_cpu_s_per_1000": cpu / len(msgs) * 1000,
    }


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


def service_drain(
    cluster: RabbitCluster, url: str, msgs: Sequence[tuple[str, bytes]], extra: dict[str, str]
) -> dict[str, Any]:
    """One worker drains the backlog from the quorum queue into PostgreSQL."""
    intake = preload(cluster, msgs)
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "INGEST_SOURCE_KIND": "amqp",
        "INGEST_AMQP_URL": cluster.amqp_urls,
        "INGEST_DATABASE_URL": url,
        "INGEST_HTTP_PORT": str(port),
        "INGEST_LOG_LEVEL": "WARNING",
        "INGEST_ROLLUP_INTERVAL_S": "3600",
        **extra,
    }
    w = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t_first = t_end = 0.0
    first_count = 0
    cpu_first = 0.0
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and w.poll() is None:
            total = 0
            with contextlib.suppress(OSError, KeyError):
                total = _health(port)["committed_messages"]
            now = time.perf_counter()
            if total and not t_first:
                t_first, first_count, cpu_first = now, total, _cpu_s(w.pid)
            if total >= len(msgs):
                t_end = now
                break
            time.sleep(0.05)
        cpu = _cpu_s(w.pid) - cpu_first if t_end else 0.0
    finally:
        w.terminate()
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
    if not t_end:
        raise RuntimeError("the worker did not drain the durable backlog in time")
    drained = len(msgs) - first_count
    if not drained:
        raise RuntimeError(
            f"the worker committed all {len(msgs):,} messages between two 50-ms samples: too few to"
            " time; use a larger backlog (--durable-messages 10000 or more)"
        )
    return {
        "workers": 1,
        "messages": len(msgs),
        "seconds": t_end - t_first,
        "msgs_per_s": drained / (t_end - t_first),
        "intake_msgs_s": intake,
        "cpu_s_per_1000": cpu / max(drained, 1) * 1000,
    }
