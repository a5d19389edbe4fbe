"""One private 3-node RabbitMQ cluster (AMQPS with a private CA) for the durable
transport's tests: starting one takes ~30 s, so the session shares it, and each test
uses a topic prefix and a queue of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiormq
import pytest

from ingest.localcluster import RabbitCluster, TlsFiles, declare_queue, rabbit_cluster
from tests.tlsca import PrivateCA, make_ca


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_ca(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def rabbit(pki: PrivateCA) -> Iterator[RabbitCluster]:
    with rabbit_cluster(tls=TlsFiles(pki.ca, pki.server_cert, pki.server_key)) as cluster:
        yield cluster


@pytest.fixture
async def lane(rabbit: RabbitCluster) -> AsyncIterator[tuple[str, str]]:
    """(prefix, queue) of this test: a quorum queue bound to `<prefix>.v1.#`, deleted after."""
    tag = uuid.uuid4().hex[:8]
    prefix, queue = f"t{tag}", f"ingest-{tag}"
    await declare_queue(rabbit.nodes[0].amqp_url, queue, prefix)
    yield prefix, queue
    for node in rabbit.alive():
        try:
            conn = await aiormq.connect(node.amqp_url)
        except (aiormq.exceptions.AMQPError, OSError):
            continue
        ch = await conn.channel()
        await ch.queue_delete(queue)
        await conn.close()
        break
