"""A private 3-node NATS 2.9 cluster with JetStream and the MQTT listener, on free
loopback ports in data directories of its own (never the machine's NATS on 4222), for
the engine comparison; RabbitMQ's is `ingest.localcluster`. Process helpers for both."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ingest.localcluster import free_ports, wait_port

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (beam runs under a shell)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return out
    for k in kids:
        out += [int(k), *_children(int(k))]
    return out


@dataclass
class Node:
    name: str
    dir: Path
    client_port: int  # AMQP or NATS
    mqtt_port: int
    peer_port: int  # Erlang distribution or NATS cluster route
    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL the node and everything it started (its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@dataclass
class NatsCluster:
    """Three nats-server nodes with JetStream, routed to each other, MQTT on each."""

    root: Path
    size: int = 3
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(3 * self.size)
        for i in range(self.size):
            p = ports[3 * i : 3 * i + 3]
            self.nodes.append(Node(f"n{i + 1}", self.root / f"n{i + 1}", p[0], p[1], p[2]))

    def _conf(self, node: Node) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{n.peer_port}" for n in self.nodes if n is not node)
        return (
            f"server_name: {node.name}\n"
            f"host: 127.0.0.1\nport: {node.client_port}\n"
            f'jetstream {{ store_dir: "{node.dir / "js"}" }}\n'
            f"cluster {{ name: gzc, host: 127.0.0.1, port: {node.peer_port}, routes: [{routes}] }}\n"
            f"mqtt {{ host: 127.0.0.1, port: {node.mqtt_port} }}\n"
        )

    def start(self, timeout: float = 60) -> None:
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            (node.dir / "nats.conf").write_text(self._conf(node))
        for node in self.nodes:
            self.start_node(node, wait=False)
        for node in self.nodes:
            self.await_node(node, timeout)

    def start_node(self, node: Node, wait: bool = True, timeout: float = 60) -> None:
        log = open(node.dir / "nats.log", "ab")  # noqa: SIM115 - the child owns it
        node.proc = subprocess.Popen(
            [NATS, "-c", str(node.dir / "nats.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.await_node(node, timeout)

    def await_node(self, node: Node, timeout: float = 60) -> None:
        wait_port(node.client_port, timeout)
        wait_port(node.mqtt_port, timeout)

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None]

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
