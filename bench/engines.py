"""Compare the two clustered engines for the durable transport (docs/transport.md):
RabbitMQ 3.10 (MQTT plugin -> amq.topic -> a quorum queue, AMQP 0-9-1 consumers with
manual acks) and NATS 2.9 JetStream (MQTT listener -> an R3 stream, one durable pull
consumer with explicit acks), each as a private 3-node cluster on loopback.

For each engine it prints and writes to bench/results/engines-<time>.json:
- survival: messages PUBACKed by the node that took them, that node then SIGKILLed
  mid-stream (once when it leads the queue/stream, once when it follows); how many
  of the acknowledged messages a consumer on a surviving node still finds;
- MQTT intake into the cluster (16 publishing connections over the 3 nodes) and one plain consumer's
  drain of that backlog with acknowledgements;
- disk and memory per queued message (so an hour of database outage at 30k msgs/s);
- a dead worker: the time until the messages a SIGKILLed consumer held reach the
  other consumer.

    python -m bench.engines [--engines rabbitmq,nats] [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
import nats
from nats.js.api import ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from bench import mqtt311
from bench.clusters import NatsCluster, dir_bytes, rss_bytes
from bench.clusters import Node as NatsNode
from bench.messages import generate
from ingest.config import AmqpConfig
from ingest.localcluster import Node as RabbitNode
from ingest.localcluster import RabbitCluster
from ingest.sources.amqp import AmqpSource

Node = RabbitNode | NatsNode

QUEUE = "ingest"
STREAM = "INGEST"
BINDING = "gz.v1.#"
SUBJECTS = ["gz.v1.>"]
CONNECTIONS = 16  # devices publish over many connections; one connection caps both engines lower


def key(topic: str, payload: bytes) -> tuple[str, bytes]:
    return topic.replace("/", "."), payload


# --- the engines behind one small interface -----------------------------------------


class Rabbit:
    name = "rabbitmq"

    def __init__(self, root: Path) -> None:
        self.cluster = RabbitCluster(root)

    def start(self) -> None:
        self.cluster.start()

    def url(self, node: Node) -> str:
        assert isinstance(node, RabbitNode)
        return node.amqp_url

    async def setup(self) -> None:
        conn = await aiormq.connect(self.url(self.cluster.nodes[0]))
        ch = await conn.channel()
        await ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await ch.queue_bind(QUEUE, "amq.topic", routing_key=BINDING)
        await conn.close()

    async def purge(self, node: Node) -> None:
        conn = await aiormq.connect(self.url(node))
        ch = await conn.channel()
        await ch.queue_purge(QUEUE)
        await conn.close()

    def leader(self) -> Node:
        return self.cluster.leader(QUEUE)

    async def drain(
        self,
        node: Node,
        expect: int,
        idle: float,
        on: Callable[[str, bytes], None] | None = None,
        prefetch: int = 10000,
    ) -> tuple[int, float]:
        """The project's consumer (ingest.sources.amqp) acknowledging every read at once."""
        acker = _Acker(expect, on)
        src = AmqpSource(
            AmqpConfig(url=self.url(node), queue=QUEUE, prefetch=prefetch, declare=False), "gz", acker
        )
        task = asyncio.create_task(src.run())
        while not acker.done.is_set():
            before = acker.got
            try:
                await asyncio.wait_for(acker.done.wait(), idle)
            except TimeoutError:
                if acker.got == before:
                    break
        await src.stop_intake()
        await src.close()
        task.cancel()
        return acker.got, acker.last - acker.first

    async def drain_aiormq(
        self, node: Node, expect: int, idle: float, prefetch: int = 2000, ack_every: int = 500
    ) -> tuple[int, float]:
        """The same drain with aiormq (what made us write ingest.sources.amqp_wire)."""
        conn = await aiormq.connect(self.url(node))
        ch = await conn.channel()
        await ch.basic_qos(prefetch_count=prefetch)
        got = 0
        first = last = 0.0
        done = asyncio.Event()

        async def on_message(msg: aiormq.abc.DeliveredMessage) -> None:
            nonlocal got, first, last
            if not got:
                first = time.perf_counter()
            got += 1
            last = time.perf_counter()
            if got % ack_every == 0 or got >= expect:
                await ch.basic_ack(msg.delivery_tag or 0, multiple=True)
            if got >= expect:
                done.set()

        await ch.basic_consume(QUEUE, on_message, no_ack=False)
        while not done.is_set():
            before = got
            try:
                await asyncio.wait_for(done.wait(), idle)
            except TimeoutError:
                if got == before:
                    break
        await conn.close()
        return got, (last - first)


class _Acker:
    """An intake that acknowledges each read as it arrives (a plain drain)."""

    def __init__(self, expect: int, on: Callable[[str, bytes], None] | None) -> None:
        self.expect = expect
        self.on = on
        self.got = 0
        self.first = self.last = 0.0
        self.done = asyncio.Event()

    def on_messages(self, source: Any, epoch: Any, messages: Any) -> None:
        if not self.got:
            self.first = time.perf_counter()
        self.got += len(messages)
        self.last = time.perf_counter()
        if self.on is not None:
            for t, p, _ in messages:
                self.on(t.replace("/", "."), p)
        source.ack(epoch, [tok for _, _, tok in messages])
        if self.got >= self.expect:
            self.done.set()

    def on_rejected(self, *args: Any) -> None:
        pass


class Jet:
    name = "nats"

    def __init__(self, root: Path) -> None:
        self.cluster = NatsCluster(root)
        self.ack_wait = 10.0

    def start(self) -> None:
        self.cluster.start()

    def url(self, node: Node) -> str:
        assert isinstance(node, NatsNode)
        return f"nats://127.0.0.1:{node.client_port}"

    async def setup(self) -> None:
        nc = await nats.connect(self.url(self.cluster.nodes[0]))
        js = nc.jetstream()
        for _ in range(60):  # the meta leader is elected a moment after start
            try:
                await js.add_stream(
                    StreamConfig(
                        name=STREAM,
                        subjects=SUBJECTS,
                        num_replicas=3,
                        storage=StorageType.FILE,
                        retention=RetentionPolicy.WORK_QUEUE,
                    )
                )
                break
            except Exception:
                await asyncio.sleep(0.5)
        await js.add_consumer(
            STREAM, ConsumerConfig(durable_name=QUEUE, ack_wait=self.ack_wait, max_ack_pending=20000)
        )
        await nc.close()

    async def purge(self, node: Node) -> None:
        nc = await nats.connect(self.url(node))
        await nc.jetstream().purge_stream(STREAM)
        await nc.close()

    async def leader_async(self) -> Node:
        for _ in range(60):
            try:
                nc = await nats.connect(self.url(self.cluster.alive()[0]))
                info = await nc.jetstream().stream_info(STREAM)
                await nc.close()
                if info.cluster is not None and info.cluster.leader:
                    return next(n for n in self.cluster.nodes if n.name == info.cluster.leader)
            except Exception:
                pass
            await asyncio.sleep(0.5)
        raise RuntimeError("no stream leader")

    async def drain(
        self,
        node: Node,
        expect: int,
        idle: float,
        on: Callable[[str, bytes], None] | None = None,
        batch: int = 500,
    ) -> tuple[int, float]:
        nc = await nats.connect(self.url(node))
        js = nc.jetstream()
        sub = await js.pull_subscribe_bind(QUEUE, STREAM)
        got = 0
        first = last = 0.0
        idle_since = time.perf_counter()
        while got < expect and time.perf_counter() - idle_since < idle:
            try:
                msgs = await sub.fetch(batch, timeout=1)
            except nats.errors.TimeoutError:
                continue
            except Exception:
                await asyncio.sleep(0.2)
                continue
            if msgs and not got:
                first = time.perf_counter()
            for m in msgs:
                if on is not None:
                    on(m.subject, m.data)
                await m.ack()
            got += len(msgs)
            last = idle_since = time.perf_counter()
        await nc.flush()
        await nc.close()
        return got, (last - first)


Engine = Rabbit | Jet


async def leader_of(engine: Engine) -> Node:
    if isinstance(engine, Jet):
        return await engine.leader_async()
    return await asyncio.to_thread(engine.leader)  # rabbitmqctl: a few seconds


# --- the measurements -----------------------------------------------------------------


async def survival(engine: Engine, leader: bool, seconds: float) -> dict[str, Any]:
    """Publish to one node, SIGKILL it mid-stream, count what a survivor holds."""
    cluster: Any = engine.cluster  # RabbitCluster or NatsCluster: the same few methods
    lead = await leader_of(engine)
    entry = lead if leader else next(n for n in cluster.nodes if n is not lead)
    survivor = next(n for n in cluster.nodes if n is not entry)
    msgs = generate(400_000, seed=int(time.time()))
    while not await _accepting(entry):  # noqa: ASYNC110 - polling a server, no event to await
        await asyncio.sleep(0.5)
    pub = asyncio.create_task(mqtt311.publish(entry.mqtt_port, msgs, f"surv-{time.time_ns()}", window=200))
    await asyncio.sleep(seconds)
    entry.kill()
    res = await pub
    acked = {key(*msgs[i]) for i in res.acked}
    found: set[tuple[str, bytes]] = set()
    t0 = time.perf_counter()
    got, _ = await _retrying(
        lambda: engine.drain(survivor, len(acked) + 10**9, idle=5.0, on=lambda t, p: found.add((t, p)))
    )
    lost = len(acked - found)
    out = {
        "entry_is_leader": leader,
        "published": res.sent,
        "acked": len(acked),
        "found": len(found),
        "delivered": got,
        "lost_acked": lost,
        "drain_s": round(time.perf_counter() - t0, 1),
    }
    print(f"  {engine.name} survival (entry {'leads' if leader else 'follows'}): {out}", flush=True)
    cluster.start_node(entry)
    await asyncio.sleep(3)
    await _retrying(lambda: engine.purge(survivor))
    return out


async def _accepting(node: Node) -> bool:
    """Whether the node takes MQTT publishes yet (NATS refuses them until its MQTT
    streams exist)."""
    try:
        res = await mqtt311.publish(node.mqtt_port, [], f"probe-{time.time_ns()}")
    except (ConnectionError, OSError):
        return False
    return not res.error


async def _retrying(make: Callable[[], Awaitable[Any]], tries: int = 30) -> Any:
    for i in range(tries):
        try:
            return await make()
        except Exception as exc:
            if i == tries - 1:
                raise
            print(f"    (retry: {type(exc).__name__}: {exc})", flush=True)
            await asyncio.sleep(1)
    return None


async def backlog(engine: Engine, n: int) -> dict[str, Any]:
    """MQTT intake of n messages (16 connections over the three nodes), what they take on disk
    and in memory, then one plain consumer's drain of them with acks."""
    cluster: Any = engine.cluster  # RabbitCluster or NatsCluster: the same few methods
    disk0 = [dir_bytes(node.dir) for node in cluster.nodes]
    rss0 = [rss_bytes(node.proc.pid) for node in cluster.nodes if node.proc]
    msgs = generate(n, seed=7)
    ports = [node.mqtt_port for node in cluster.nodes]
    t0 = time.perf_counter()
    pubs = await mqtt311.publish_spread(ports, msgs, "bl", CONNECTIONS, attempt=_retrying)
    intake = time.perf_counter() - t0
    acked = sum(len(p.acked) for p in pubs)
    await asyncio.sleep(2)
    disk = [dir_bytes(node.dir) - d for node, d in zip(cluster.nodes, disk0, strict=True)]
    rss = [rss_bytes(node.proc.pid) - r for node, r in zip(cluster.nodes, rss0, strict=True) if node.proc]
    lead = await leader_of(engine)
    got, drain = await engine.drain(lead, acked, idle=10.0)
    extra: dict[str, Any] = {}
    if isinstance(engine, Rabbit):  # the same backlog again, drained by aiormq
        await mqtt311.publish_spread(ports, msgs, "bl2", CONNECTIONS)
        got2, drain2 = await engine.drain_aiormq(lead, acked, idle=10.0)
        extra["aiormq_drain_msgs_s"] = round(got2 / drain2) if drain2 else 0
    payload = sum(len(p) for _, p in msgs) / n
    per_msg = max(disk) / max(acked, 1)
    out = {
        "messages": n,
        "acked": acked,
        "payload_bytes": round(payload),
        "intake_msgs_s": round(acked / intake),
        "drained": got,
        "drain_msgs_s": round(got / drain) if drain else 0,
        "disk_bytes_per_msg_per_node": round(per_msg),
        "rss_bytes_per_msg_per_node": round(max(rss) / max(acked, 1)),
        "hour_at_30k_GiB_per_node": round(per_msg * 30_000 * 3600 / 2**30, 1),
        **extra,
    }
    print(f"  {engine.name} backlog: {out}", flush=True)
    return out


HOLDER = r"""
import asyncio, sys, aiormq, nats
kind, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def main():
    held = 0
    if kind == "rabbitmq":
        conn = await aiormq.connect(url); ch = await conn.channel()
        await ch.basic_qos(prefetch_count=n)
        async def on(m):
            nonlocal held
            held += 1
            if held == n: print("held", flush=True)
        await ch.basic_consume("ingest", on, no_ack=False)
    else:
        nc = await nats.connect(url); sub = await nc.jetstream().pull_subscribe_bind("ingest", "INGEST")
        while held < n:
            try: held += len(await sub.fetch(n - held, timeout=1))
            except nats.errors.TimeoutError: pass
        print("held", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def dead_worker(engine: Engine, n: int = 2000) -> dict[str, Any]:
    """A consumer holds n unacked messages and is SIGKILLed: how long until another has them."""
    cluster: Any = engine.cluster  # RabbitCluster or NatsCluster: the same few methods
    msgs = generate(n, seed=11)
    await mqtt311.publish(cluster.nodes[0].mqtt_port, msgs, f"dw-{time.time_ns()}")
    holder = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [sys.executable, "-c", HOLDER, engine.name, engine.url(cluster.nodes[1]), str(n)],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    await asyncio.to_thread(holder.stdout.readline)
    other = asyncio.create_task(engine.drain(cluster.nodes[2], n, idle=120.0))
    await asyncio.sleep(1)
    t0 = time.perf_counter()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    got, _ = await other
    out = {"held": n, "taken_over": got, "seconds": round(time.perf_counter() - t0, 2)}
    if isinstance(engine, Jet):
        out["ack_wait_s"] = engine.ack_wait
    print(f"  {engine.name} dead worker: {out}", flush=True)
    return out


async def measure(engine: Engine, n: int, seconds: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    await asyncio.to_thread(engine.start)
    await _retrying(engine.setup)
    started = round(time.perf_counter() - t0, 1)
    print(f"{engine.name}: 3 nodes up and set up in {started} s", flush=True)
    res: dict[str, Any] = {"start_s": started}
    res["survival"] = [await survival(engine, True, seconds), await survival(engine, False, seconds)]
    res["backlog"] = await backlog(engine, n)
    res["dead_worker"] = await dead_worker(engine)
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="rabbitmq,nats")
    ap.add_argument("--messages", type=int, default=30_000, help="backlog size for intake/drain/disk")
    ap.add_argument("--kill-after", type=float, default=2.0, help="seconds of publishing before the SIGKILL")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    for name in args.engines.split(","):
        with tempfile.TemporaryDirectory(prefix=f"engines-{name}-") as tmp:
            engine: Engine = Rabbit(Path(tmp)) if name == "rabbitmq" else Jet(Path(tmp))
            try:
                results[name] = asyncio.run(measure(engine, args.messages, args.kill_after))
            finally:
                engine.cluster.stop()
    out = Path(__file__).parent / "results" / f"engines-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
