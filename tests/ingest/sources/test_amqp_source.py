"""The AMQP source on its own against a real 3-node RabbitMQ cluster: what devices
publish over MQTT reaches the intake, acknowledgements in any commit order empty the
queue, and AMQPS verifies the broker. The whole worker over the cluster:
test_amqp_service.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

import aiormq
import pytest

from bench import mqtt311
from bench.messages import generate
from ingest.config import AmqpConfig
from ingest.localcluster import RabbitCluster
from ingest.sources import Message, Source
from ingest.sources.amqp import AmqpSource
from tests.tlsca import PrivateCA

Lane = tuple[str, str]


def messages(prefix: str, n: int, seed: int = 1) -> list[tuple[str, bytes]]:
    return [(t.replace("gz/", f"{prefix}/", 1), p) for t, p in generate(n, devices=200, seed=seed)]


class Recorder:
    """An intake that records what arrives and acknowledges each read's messages
    later, in reverse order of arrival (two writers commit out of order)."""

    def __init__(self, hold: int = 0) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.reads: list[tuple[Source, Hashable, list[Any]]] = []
        self.hold = hold  # reads kept before acknowledging them, newest first
        self.arrived = asyncio.Event()

    def on_messages(self, source: Source, epoch: Hashable, msgs: Sequence[Message]) -> None:
        self.got += [(t, p) for t, p, _ in msgs]
        self.reads.append((source, epoch, [tok for _, _, tok in msgs]))
        if len(self.reads) > self.hold:
            for src, ep, tokens in reversed(self.reads):
                src.ack(ep, tokens)
            self.reads.clear()
        self.arrived.set()

    def ack_all(self) -> None:
        for src, ep, tokens in reversed(self.reads):
            src.ack(ep, tokens)
        self.reads.clear()

    def on_rejected(self, *args: Any) -> None:  # pragma: no cover - the AMQP source rejects nothing
        raise AssertionError(args)

    async def wait_for(self, n: int, within: float = 60) -> None:
        async with asyncio.timeout(within):
            while len(self.got) < n:
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def consuming(cfg: AmqpConfig, prefix: str, intake: Recorder) -> AsyncIterator[AmqpSource]:
    src = AmqpSource(cfg, prefix, intake)
    task = asyncio.create_task(src.run())
    try:
        async with asyncio.timeout(30):
            await src.wait_connected()
        yield src
    finally:
        await src.stop_intake()
        await src.close()
        await asyncio.wait([task], timeout=10)
        task.cancel()


async def ready_count(url: str, queue: str) -> int:
    conn = await aiormq.connect(url)
    try:
        ch = await conn.channel()
        ok = await ch.queue_declare(queue, passive=True)
        return int(ok.message_count or 0)
    finally:
        await conn.close()


async def test_published_messages_arrive_and_acks_empty_the_queue(rabbit: RabbitCluster, lane: Lane) -> None:
    prefix, queue = lane
    # device ids with dots and colons come back whole (RabbitMQ keeps a '.' as '.')
    dotted = [(f"{prefix}/v1/charger/ch.{i}:a.b/telemetry", b"{}") for i in range(20)]
    msgs = messages(prefix, 3000) + dotted
    rec = Recorder(hold=3)
    cfg = AmqpConfig(url=rabbit.amqp_urls, queue=queue, prefetch=500, declare=False)
    async with consuming(cfg, prefix, rec):
        res = await mqtt311.publish(rabbit.nodes[1].mqtt_port, msgs, f"{prefix}-pub")
        assert len(res.acked) == len(msgs)
        await rec.wait_for(len(msgs))
        rec.ack_all()
        await asyncio.sleep(0.5)  # the last multiple-ack on its way
    assert sorted(rec.got) == sorted(msgs)
    assert await ready_count(rabbit.nodes[0].amqp_url, queue) == 0


async def test_amqps_verifies_the_broker(rabbit: RabbitCluster, lane: Lane, pki: PrivateCA) -> None:
    prefix, queue = lane
    node = rabbit.nodes[0]
    url = f"amqps://guest:guest@127.0.0.1:{node.amqps_port}/"
    rec = Recorder()
    cfg = AmqpConfig(
        url=url,
        queue=queue,
        declare=False,
        ca_file=str(pki.ca),
        server_name="localhost",
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
    )
    async with consuming(cfg, prefix, rec):
        await mqtt311.publish(node.mqtt_port, messages(prefix, 10), f"{prefix}-pub")
        await rec.wait_for(10)
    # a CA that did not sign the broker's certificate: the worker stops, naming the node
    bad = AmqpConfig(url=url, queue=queue, declare=False, ca_file=str(pki.wrong_ca))
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{node.amqps_port}.*TLS verification failed"):
        await asyncio.wait_for(AmqpSource(bad, prefix, Recorder()).run(), 30)
    # the right CA but a name the certificate does not carry
    wrong = AmqpConfig(url=url, queue=queue, declare=False, ca_file=str(pki.ca), server_name="elsewhere")
    with pytest.raises(RuntimeError, match="TLS verification failed"):
        await asyncio.wait_for(AmqpSource(wrong, prefix, Recorder()).run(), 30)
