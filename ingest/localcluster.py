"""A private RabbitMQ cluster the project starts for itself: three nodes on free
loopback ports, each in a data directory of its own, with its own Erlang cookie, node
names and epmd port, the MQTT plugin on and (optionally) AMQPS with a given
certificate. Used by the demo (`ingest demo --transport amqp`), the benchmarks and
the tests; never the machine's own RabbitMQ (5672, epmd 4369)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.config import AmqpConfig
from ingest.sources import Message, Source
from ingest.sources.amqp import AmqpSource

RABBIT_BIN = Path(os.environ.get("INGEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))


def _epmd() -> str:
    found = shutil.which("epmd")
    if found:
        return found
    erts = sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))
    return str(erts[-1]) if erts else "epmd"


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together while chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a node's AMQPS listener."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class Node:
    name: str
    dir: Path
    amqp_port: int
    mqtt_port: int
    dist_port: int
    amqps_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def kill(self) -> None:
        """SIGKILL the node (beam runs under the rabbitmq-server script, in its process
        group) and wait until its ports are closed."""
        if self.proc is not None and self.proc.poll() is None:
            members = _group(self.proc.pid)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            deadline = time.monotonic() + 30
            while any(Path(f"/proc/{pid}").exists() for pid in members) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.proc = None


@dataclass
class RabbitCluster:
    """Three nodes formed by classic peer discovery, and a private epmd."""

    root: Path
    size: int = 3
    tls: TlsFiles | None = None
    nodes: list[Node] = field(default_factory=list)
    cookie: str = field(default_factory=lambda: secrets.token_hex(16))
    epmd_port: int = 0
    epmd: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        ports = free_ports(4 * self.size + 1)
        self.epmd_port = ports.pop()
        tag = secrets.token_hex(3)
        for i in range(self.size):
            amqp, mqtt, dist, amqps = ports[4 * i : 4 * i + 4]
            self.nodes.append(
                Node(f"gzingest{tag}n{i + 1}@localhost", self.root / f"n{i + 1}", amqp, mqtt, dist, amqps)
            )

    @property
    def amqp_urls(self) -> str:
        """The `amqp.url` setting for this cluster: every node, comma-separated."""
        return ",".join(n.amqp_url for n in self.nodes)

    def env(self, node: Node) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(node.dir),  # the cookie file
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_NODENAME=node.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(node.amqp_port),
            RABBITMQ_DIST_PORT=str(node.dist_port),
            RABBITMQ_MNESIA_BASE=str(node.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(node.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(node.dir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(node.dir / "enabled_plugins"),
            RABBITMQ_ENABLED_PLUGINS="rabbitmq_mqtt",
            RABBITMQ_PID_FILE=str(node.dir / "rabbit.pid"),
        )
        return env

    def conf(self, node: Node) -> str:
        peers = "".join(
            f"cluster_formation.classic_config.nodes.{i + 1} = {n.name}\n" for i, n in enumerate(self.nodes)
        )
        text = (
            f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            "mqtt.exchange = amq.topic\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{peers}"
            # a worker holds its deliveries through a database outage: 2 h before the
            # broker gives up on it (the default 30 min would close its channel)
            "consumer_timeout = 7200000\n"
            "log.file.level = warning\n"
            "log.console = false\n"
        )
        if self.tls is not None:
            text += (
                f"listeners.ssl.default = 127.0.0.1:{node.amqps_port}\n"
                f"ssl_options.cacertfile = {self.tls.ca}\n"
                f"ssl_options.certfile = {self.tls.cert}\n"
                f"ssl_options.keyfile = {self.tls.key}\n"
                "ssl_options.verify = verify_peer\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
            )
        return text

    def start(self, timeout: float = 180) -> None:
        """Start all nodes at once (they wait for each other to form the cluster)."""
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, ERL_EPMD_ADDRESS="127.0.0.1")
        self.epmd = subprocess.Popen(
            [_epmd(), "-port", str(self.epmd_port)],
            env=env,
            cwd=self.root,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            (node.dir / "rabbitmq.conf").write_text(self.conf(node))
            cookie = node.dir / ".erlang.cookie"
            if not cookie.exists():
                cookie.write_text(self.cookie)
                cookie.chmod(0o400)
        for node in self.nodes:
            self.start_node(node, wait=False)
        for node in self.nodes:
            self.await_node(node, timeout)

    def start_node(self, node: Node, wait: bool = True, timeout: float = 180) -> None:
        with open(node.dir / "stdout.log", "ab") as log:
            node.proc = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env(node),
                cwd=node.dir,  # where an Erlang VM leaves its erl_crash.dump
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.await_node(node, timeout)

    def await_node(self, node: Node, timeout: float = 180) -> None:
        # the MQTT listener opens last, after the node has joined the cluster
        wait_port(node.amqp_port, timeout, node.proc)
        wait_port(node.mqtt_port, timeout, node.proc)
        if self.tls is not None:
            wait_port(node.amqps_port, timeout, node.proc)

    def ctl(self, node: Node, *args: str, tool: str = "rabbitmqctl") -> str:
        out = subprocess.run(
            [str(RABBIT_BIN / tool), "-n", node.name, *args],
            env=self.env(node),
            cwd=node.dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.stdout + out.stderr

    def leader(self, queue: str) -> Node:
        """The node leading a quorum queue."""
        for node in self.alive():
            out = self.ctl(node, "list_queues", "-q", "--no-table-headers", "name", "leader")
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == queue:
                    return next(n for n in self.nodes if n.name == parts[1])
        raise RuntimeError(f"no leader for queue {queue!r}")

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None]

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        if self.epmd is not None and self.epmd.poll() is None:
            os.killpg(self.epmd.pid, signal.SIGKILL)
            self.epmd.wait()


class _NoIntake:
    """Declaring consumes for a moment; what arrives then is left unacknowledged and
    returns to the queue when the connection closes."""

    def on_messages(self, source: Source, epoch: Hashable, messages: Sequence[Message]) -> None:
        """Taken and never acknowledged: the queue gets them back on close."""

    def on_rejected(self, *args: Any) -> None:
        """The AMQP source refuses nothing itself."""


async def declare_queue(url: str, queue: str = "ingest", prefix: str = "gz") -> None:
    """The quorum queue and its binding to `<prefix>.v1.#` (what a worker declares at
    start), so that devices can publish before any worker runs."""
    src = AmqpSource(AmqpConfig(url=url, queue=queue, prefetch=1), prefix, _NoIntake())
    task = asyncio.create_task(src.run())
    try:
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(src.wait_connected())], timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()
        if not src.connected:
            raise TimeoutError(f"could not declare {queue!r} on {url} within 60 s")
    finally:
        await src.stop_intake()
        await src.close()
        task.cancel()


@contextlib.contextmanager
def rabbit_cluster(size: int = 3, tls: TlsFiles | None = None) -> Iterator[RabbitCluster]:
    """A private cluster in a temporary directory, killed and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="ingest-rabbit-") as tmp:
        cluster = RabbitCluster(Path(tmp), size, tls)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
