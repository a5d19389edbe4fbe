"""The fault suite: a steady stream of unique messages while something fails.

    python -m bench.faults                       # every scenario and transport, 50,000 each
    python -m bench.faults --transport mqtt --scenario restart_1s --scenario pg_down
    python -m bench.faults --transport amqp --scenario node_kill --messages 20000
    python -m bench.faults --messages 5000 --outage-scale 0.1   # a quick look

For each scenario and transport it starts its own Mosquitto (persistence on) or its
own 3-node RabbitMQ cluster (the durable transport; devices on a node that does not
lead the queue, `node_kill` SIGKILLs the leader), its own PostgreSQL
and the workers as `ingest run` processes, all on free loopback ports, publishes N
charger readings with distinct keys at a steady rate (QoS 1, a persistent device
session that resends what was in flight), injects the fault, waits until the database
stops changing, and counts: published, acknowledged by the broker (PUBACK received),
stored, duplicated (rows minus distinct keys) and lost (acknowledged but not stored).
It prints a table and writes JSON to bench/results/. Not part of the tests (a smoke
run of two short scenarios is: tests/bench/test_faults.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingest.localservices import Broker, PrivatePostgres, broker, free_port, private_postgres, terminate

RESULTS = Path(__file__).parent / "results"
DEVICES = 100


@dataclass
class Outcome:
    scenario: str
    transport: str
    published: int = 0
    acknowledged: int = 0
    stored: int = 0
    duplicated: int = 0
    lost: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def messages(n: int) -> list[tuple[str, bytes]]:
    """n charger readings; the seq is the message's number, unique across the stream."""
    start = datetime.now(UTC) - timedelta(hours=12)
    out = []
    for i in range(n):
        ts = start + timedelta(milliseconds=10 * i)
        doc = {"ts": ts.isoformat(), "seq": i, "metrics": {"energy_wh": 1000.0 + i, "power_w": 7000.0}}
        out.append((f"gz/v1/charger/fault-{i % DEVICES:03d}/telemetry", orjson.dumps(doc)))
    return out


class Publisher:
    """A device side that behaves as devices do: a persistent session, automatic
    reconnection, in-flight messages sent again after a reconnect. Records which
    messages the broker acknowledged."""

    def __init__(self, port: int, msgs: list[tuple[str, bytes]], rate: float) -> None:
        self.port, self.msgs, self.rate = port, msgs, rate
        self.acked: set[int] = set()
        self.sent = 0
        self._infos: list[paho.MQTTMessageInfo] = []
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id="fault-devices",
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.1, 1)  # type: ignore[arg-type]  # seconds; paho takes a float
        self.client = c

    def run(self) -> None:
        c = self.client
        c.connect_async("127.0.0.1", self.port)
        c.loop_start()
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(self.msgs):
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._infos.append(c.publish(topic, payload, qos=1))
            self.sent = i + 1
        deadline = time.monotonic() + 60
        while not all(map(_acked, self._infos)) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.acked = {n for n, info in enumerate(self._infos) if _acked(info)}
        c.disconnect()
        c.loop_stop()


def _acked(info: paho.MQTTMessageInfo) -> bool:
    """Whether the broker's PUBACK for this message arrived. paho's is_published()
    raises for a message published while disconnected (queued, sent after the
    reconnect), though it marks it published like the rest once acknowledged."""
    return bool(getattr(info, "_published", False))


class Proxy:
    """A TCP proxy to PostgreSQL that can cut the network: every connection through it
    is dropped and new ones are refused until it is restored."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers -= {writer, up_w}

    async def _cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    async def _shutdown(self) -> None:
        await self._cut()
        if self._server is not None:
            await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class Workers:
    def __init__(self, source_env: dict[str, str], db_url: str, log: Path) -> None:
        self.source_env, self.db_url, self.log = source_env, db_url, log
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, client_id: str) -> None:
        env = {
            **os.environ,
            **self.source_env,
            "INGEST_DATABASE_URL": self.db_url,
            "INGEST_MQTT_CLIENT_ID": client_id,
            "INGEST_HTTP_PORT": str(free_port()),
            "INGEST_DATABASE_RETRY_MAX_S": "1",
            "INGEST_ROLLUP_INTERVAL_S": "3600",
        }
        with self.log.open("ab") as err:
            self.procs[client_id] = subprocess.Popen(
                [sys.executable, "-m", "ingest.cli", "run"], env=env, stdout=subprocess.DEVNULL, stderr=err
            )

    def kill(self, client_id: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.pop(client_id)
        p.send_signal(sig)
        p.wait(30)

    def stop_all(self) -> None:
        for p in self.procs.values():
            terminate(p)
        self.procs.clear()


async def counts(db_url: str) -> tuple[int, int, set[int]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT seq FROM readings_charger")
    finally:
        await conn.close()
    seqs = [r["seq"] for r in rows]
    return len(seqs), len(seqs) - len(set(seqs)), set(seqs)


async def settle(db_url: str, quiet: float = 5.0, within: float = 120.0) -> tuple[int, int, set[int]]:
    """The database's counts once they stop changing."""
    last: tuple[int, int, set[int]] = (-1, 0, set())
    changed = time.monotonic()
    deadline = changed + within
    while time.monotonic() < deadline:
        try:
            now = await counts(db_url)
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.5)
            continue
        if now[0] != last[0]:
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet:
            break
        await asyncio.sleep(0.5)
    return last


async def wait_until(cond: Callable[[], bool], within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not cond() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls other processes
        await asyncio.sleep(0.05)


async def migrate(url: str) -> None:
    from ingest.migrate import migrate as apply

    conn = await asyncpg.connect(url)
    try:
        await apply(conn)
    finally:
        await conn.close()


class MqttTransport:
    """One Mosquitto, persistence on: devices and workers on the same broker."""

    name = "mqtt"

    def __init__(self, b: Broker) -> None:
        self.b = b
        self.dir = b.dir
        self.device_port = b.port
        self.env = {"INGEST_MQTT_URL": b.url}
        self.ready_line = "subscribing to"

    async def restart_devices_node(self, down: float) -> str:
        await asyncio.to_thread(self.b.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.b.start)
        return f"broker down {down:.1f} s"

    async def kill_leader(self, down: float) -> str:
        raise NotImplementedError("a single broker has no cluster")


class AmqpTransport:
    """A private 3-node RabbitMQ cluster: devices publish MQTT to one node, the
    workers consume the quorum queue over AMQP from any."""

    name = "amqp"

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.dir = cluster.root
        leader = cluster.leader("ingest")
        # the devices' node is not the queue's leader, so that a leader's SIGKILL
        # tests the queue's replication and not the devices' reconnection
        self.devices = next(n for n in cluster.nodes if n is not leader)
        self.device_port = self.devices.mqtt_port
        self.env = {"INGEST_SOURCE_KIND": "amqp", "INGEST_AMQP_URL": cluster.amqp_urls}
        self.ready_line = "consuming"

    async def restart_devices_node(self, down: float) -> str:
        node = self.devices
        await asyncio.to_thread(node.kill)
        await asyncio.sleep(down)
        started = time.monotonic()
        await asyncio.to_thread(self.cluster.start_node, node)
        return f"devices' node SIGKILLed, down {down + time.monotonic() - started:.1f} s"

    async def kill_leader(self, down: float) -> str:
        node = await asyncio.to_thread(self.cluster.leader, "ingest")
        await asyncio.to_thread(node.kill)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.cluster.start_node, node)
        return f"queue leader SIGKILLed, restarted after {down:.0f} s"


Transport = MqttTransport | AmqpTransport


@contextlib.asynccontextmanager
async def transport(kind: str) -> AsyncIterator[Transport]:
    if kind == "mqtt":
        with broker(persistence=True) as b:
            yield MqttTransport(b)
        return
    from ingest.localcluster import declare_queue, rabbit_cluster

    with rabbit_cluster() as cluster:
        await declare_queue(cluster.amqp_urls)
        yield AmqpTransport(cluster)


@dataclass
class Stage:
    """What a scenario gets: the publisher (to watch progress), the workers, the
    broker, the database and the proxy the workers reach it through."""

    pub: Publisher
    workers: Workers
    transport: Transport
    pg: PrivatePostgres
    proxy: Proxy
    outage_scale: float
    notes: list[str]

    async def at(self, share: float) -> None:
        n = len(self.pub.msgs)
        await wait_until(lambda: self.pub.sent >= share * n)

    def outage(self, seconds: float) -> float:
        return max(0.5, seconds * self.outage_scale)


async def sigkill(s: Stage) -> None:
    for share in (0.2, 0.45, 0.7):
        await s.at(share)
        s.workers.kill("w1")
        await asyncio.sleep(0.5)
        s.workers.start("w1")


def restart(seconds: float) -> Callable[[Stage], Awaitable[None]]:
    async def fault(s: Stage) -> None:
        await s.at(0.3)
        s.notes.append(await s.transport.restart_devices_node(s.outage(seconds)))

    return fault


async def node_kill(s: Stage) -> None:
    await s.at(0.3)
    s.notes.append(await s.transport.kill_leader(s.outage(5)))


async def worker_leaves(s: Stage) -> None:
    s.workers.start("w2")
    await s.at(0.4)
    s.workers.kill("w2", signal.SIGTERM)


async def pg_down(s: Stage) -> None:
    await s.at(0.3)
    down = s.outage(60)
    await asyncio.to_thread(s.pg.stop)
    await asyncio.sleep(down)
    await asyncio.to_thread(s.pg.start)
    s.notes.append(f"PostgreSQL down {down:.1f} s")


async def net_cut(s: Stage) -> None:
    await s.at(0.3)
    down = s.outage(30)
    s.proxy.cut()
    await asyncio.sleep(down)
    s.proxy.restore()
    s.notes.append(f"network to the database cut {down:.1f} s")


SCENARIOS: dict[str, Callable[[Stage], Awaitable[None]]] = {
    "sigkill": sigkill,
    "restart_1s": restart(1),
    "restart_5s": restart(5),
    "node_kill": node_kill,
    "worker_leaves": worker_leaves,
    "pg_down": pg_down,
    "net_cut": net_cut,
}


@contextlib.contextmanager
def _proxy(target: int) -> Iterator[Proxy]:
    p = Proxy(target)
    try:
        yield p
    finally:
        p.close()


async def run_scenario(
    name: str, n: int, rate: float, outage_scale: float = 1.0, kind: str = "mqtt"
) -> Outcome:
    out = Outcome(name, kind)
    msgs = messages(n)
    async with transport(kind) as t:
        with private_postgres() as pg, _proxy(pg.port) as proxy:
            url = pg.url.replace(f":{pg.port}/", f":{proxy.port}/")
            await migrate(pg.url)
            log = t.dir / f"workers-{name}.log"
            workers = Workers(t.env, url, log)
            workers.start("w1")
            await wait_until(lambda: log.exists() and t.ready_line in log.read_text(errors="replace"), 60)
            pub = Publisher(t.device_port, msgs, rate)
            stage = Stage(pub, workers, t, pg, proxy, outage_scale, out.notes)
            started = time.monotonic()
            publishing = asyncio.create_task(asyncio.to_thread(pub.run))
            await SCENARIOS[name](stage)
            await publishing
            stored, dup, seqs = await settle(pg.url)
            out.seconds = round(time.monotonic() - started, 1)
            workers.stop_all()
    out.published = n
    out.acknowledged = len(pub.acked)
    out.stored = stored - dup
    out.duplicated = dup
    out.lost = len(pub.acked - seqs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    ap.add_argument(
        "--transport",
        action="append",
        choices=["mqtt", "amqp"],
        help="mqtt: one Mosquitto; amqp: the durable transport, a private 3-node RabbitMQ "
        "cluster (repeatable; default: both)",
    )
    ap.add_argument("--messages", type=int, default=50_000, help="messages per scenario (default 50,000)")
    ap.add_argument("--rate", type=float, default=800.0, help="messages per second (default 800)")
    ap.add_argument(
        "--outage-scale",
        type=float,
        default=1.0,
        help="scale the outages (PostgreSQL 60 s, network 30 s, broker 1 s / 5 s)",
    )
    args = ap.parse_args(argv)
    names = args.scenario or list(SCENARIOS)
    results = []
    print(
        f"{'scenario':<14} {'transport':<9} {'published':>9} {'acked':>9} {'stored':>9} "
        f"{'dup':>5} {'lost':>6} {'s':>6}  notes",
        flush=True,
    )
    for kind, name in [(k, n) for k in args.transport or ["mqtt", "amqp"] for n in names]:
        if kind == "mqtt" and name == "node_kill":
            continue  # a single broker has no cluster
        o = asyncio.run(run_scenario(name, args.messages, args.rate, args.outage_scale, kind))
        results.append(o)
        print(
            f"{o.scenario:<14} {o.transport:<9} {o.published:>9,} {o.acknowledged:>9,} {o.stored:>9,} "
            f"{o.duplicated:>5,} {o.lost:>6,} {o.seconds:>6}  {'; '.join(o.notes)}",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(
        orjson.dumps(
            {
                "when": datetime.now(UTC).isoformat(),
                "machine": socket.gethostname(),
                "messages": args.messages,
                "rate": args.rate,
                "outage_scale": args.outage_scale,
                "results": [asdict(o) for o in results],
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
