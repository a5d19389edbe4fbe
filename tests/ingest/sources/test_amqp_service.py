"""The worker over the durable transport, against a real 3-node RabbitMQ cluster and
the real PostgreSQL: devices publish MQTT to the cluster, and every message a node
PUBACKed is stored exactly once — through a SIGKILLed worker (its deliveries go to
the other worker) and a SIGKILLed node (the queue's leader, mid-stream)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from bench import mqtt311
from ingest import config as config_mod
from ingest.config import Config
from ingest.localcluster import RabbitCluster
from tests.ingest.sources.test_amqp_source import ready_count
from tests.services import free_port, running

Lane = tuple[str, str]
pytestmark = pytest.mark.slow


def stream(prefix: str, n: int, devices: int = 100) -> list[tuple[str, bytes]]:
    """n charger readings with distinct (device, ts) keys."""
    start = datetime.now(UTC) - timedelta(hours=12)
    out = []
    for i in range(n):
        dev, k = i % devices, i // devices
        doc = {
            "ts": (start + timedelta(seconds=k)).isoformat(),
            "seq": k,
            "metrics": {"energy_wh": 1000.0 + k},
        }
        out.append((f"{prefix}/v1/charger/ch-{dev:04d}/telemetry", orjson.dumps(doc)))
    return out


def key(msg: tuple[str, bytes]) -> tuple[str, datetime]:
    return msg[0].split("/")[3], datetime.fromisoformat(orjson.loads(msg[1])["ts"])


def env_for(rabbit: RabbitCluster, lane: Lane, db_url: str, **extra: str) -> dict[str, str]:
    prefix, queue = lane
    return {
        "INGEST_SOURCE_KIND": "amqp",
        "INGEST_AMQP_URL": rabbit.amqp_urls,
        "INGEST_AMQP_QUEUE": queue,
        "INGEST_MQTT_PREFIX": prefix,
        "INGEST_DATABASE_URL": db_url,
        "INGEST_HTTP_PORT": "0",
        **extra,
    }


def config(rabbit: RabbitCluster, lane: Lane, db_url: str) -> Config:
    return config_mod.load(None, env_for(rabbit, lane, db_url))


async def stored(db_url: str) -> list[tuple[str, datetime]]:
    conn = await asyncpg.connect(db_url)
    try:
        return [(r[0], r[1]) for r in await conn.fetch("SELECT device_id, ts FROM readings_charger")]
    finally:
        await conn.close()


async def wait_stored(db_url: str, n: int, within: float = 120) -> list[tuple[str, datetime]]:
    deadline = time.monotonic() + within
    got: list[tuple[str, datetime]] = []
    while time.monotonic() < deadline:
        got = await stored(db_url)
        if len(got) >= n:
            return got
        await asyncio.sleep(0.3)
    return got


async def test_published_messages_are_stored_exactly_once(
    rabbit: RabbitCluster, lane: Lane, db_url: str
) -> None:
    prefix, queue = lane
    msgs = stream(prefix, 6000)
    async with running(config(rabbit, lane, db_url)) as svc:
        assert svc.health()["source"] == "amqp"
        res = await mqtt311.publish(rabbit.nodes[1].mqtt_port, msgs, f"{prefix}-pub")
        assert len(res.acked) == len(msgs)
        rows = await wait_stored(db_url, len(msgs))
    assert sorted(rows) == sorted(key(m) for m in msgs)
    assert await ready_count(rabbit.nodes[0].amqp_url, queue) == 0  # every delivery acknowledged


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "run"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def health(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
        body: dict[str, object] = orjson.loads(r.read())
        return body


async def test_a_killed_workers_messages_go_to_another_and_are_stored_once(
    rabbit: RabbitCluster, lane: Lane, db_url: str, tmp_path: Path
) -> None:
    """Worker A's database is unreachable, so it holds what it was delivered,
    unacknowledged; SIGKILLed, its messages go to worker B, which stores each once."""
    prefix, queue = lane
    msgs = stream(prefix, 3000)
    port = free_port()
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    env = env_for(rabbit, lane, dead_db, INGEST_HTTP_PORT=str(port), INGEST_DATABASE_MIGRATE_ON_START="false")
    log = tmp_path / "worker-a.log"
    with worker(env, log) as a:
        deadline = time.monotonic() + 60
        pending, ready, published = 0, -1, False
        # A holds them all: none ready in the queue, some in its pipeline (the rest
        # wait in its socket while its intake is paused)
        while not (published and pending and ready == 0):
            assert time.monotonic() < deadline, (pending, ready, log.read_text()[-3000:])
            assert a.poll() is None, log.read_text()
            try:
                h = await asyncio.to_thread(health, port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            if h["mqtt_connected"] and not published:
                res = await mqtt311.publish(rabbit.nodes[0].mqtt_port, msgs, f"{prefix}-pub")
                assert len(res.acked) == len(msgs)
                published = True
            pending = int(str(h["pending_messages"]))
            ready = await ready_count(rabbit.nodes[0].amqp_url, queue)
            await asyncio.sleep(0.2)
        async with running(config(rabbit, lane, db_url)) as b:
            await asyncio.sleep(1)
            assert b.pipeline.committed_messages == 0  # A holds them all
            os.kill(a.pid, signal.SIGKILL)
            rows = await wait_stored(db_url, len(msgs))
    assert sorted(rows) == sorted(key(m) for m in msgs)


async def test_a_killed_node_loses_nothing_it_acknowledged(
    rabbit: RabbitCluster, lane: Lane, db_url: str
) -> None:
    """Devices publish to the queue's leader, which is SIGKILLed mid-stream: every
    message it PUBACKed is stored, once."""
    prefix, queue = lane
    leader = await asyncio.to_thread(rabbit.leader, queue)
    msgs = stream(prefix, 200_000, devices=1000)
    try:
        async with running(config(rabbit, lane, db_url)) as svc:
            pub = asyncio.create_task(mqtt311.publish(leader.mqtt_port, msgs, f"{prefix}-pub", window=200))
            await asyncio.wait_for(svc.pipeline.wait_committed(1000), 60)
            leader.kill()
            res = await pub
            assert res.error or len(res.acked) < len(msgs)  # the stream was cut
            acked = {key(msgs[i]) for i in res.acked}
            rows = await wait_stored(db_url, len(acked))
            assert acked <= set(rows)
            assert len(rows) == len(set(rows))
    finally:
        await asyncio.to_thread(rabbit.start_node, leader)
