"""Local servers the project starts for itself: a Mosquitto with a generated
configuration on a free loopback port, and a private PostgreSQL in a data directory
of its own. Used by the one-command demo, the benchmarks and the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

# Queue limits must be set on purpose: the defaults drop QoS 1 messages under load.
BROKER_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
persistence {persistence}
persistence_location {dir}/
autosave_interval 1
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


def terminate(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Broker:
    port: int
    dir: Path
    persistence: bool = False
    extra: str = ""  # more mosquitto.conf lines (authentication, listeners)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the broker is not running")
        return self.proc.pid

    def start(self) -> None:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            BROKER_CONF.format(
                port=self.port, dir=self.dir, persistence="true" if self.persistence else "false"
            )
            + self.extra
        )
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to its own user: let it write its log
            # and persistence file here.
            with contextlib.suppress(KeyError, LookupError):
                shutil.chown(self.dir, "mosquitto")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err} {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log(self) -> str:
        p = self.dir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


@contextlib.contextmanager
def broker(persistence: bool = False, extra: str = "") -> Iterator[Broker]:
    d = Path(tempfile.mkdtemp(prefix="ingest-mosq-"))
    b = Broker(free_port(), d, persistence, extra)
    b.start()
    try:
        yield b
    finally:
        b.stop()
        shutil.rmtree(d, ignore_errors=True)


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql (scripts/setup installs it)")
    return found[-1].parent


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own, on a free loopback port, that the test
    may stop and start. It runs as the `postgres` user when the test runs as root."""

    dir: Path
    port: int
    durable: bool = False  # fsync on, as in production; off is faster for tests
    settings: tuple[str, ...] = ()  # extra "name=value" server settings

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(_pg_bindir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        if not self.durable:
            opts += " -c fsync=off -c full_page_writes=off"
        for setting in self.settings:
            opts += f" -c {setting}"
        self._run(
            "pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-o", opts, "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def private_postgres(durable: bool = False, settings: tuple[str, ...] = ()) -> Iterator[PrivatePostgres]:
    d = Path(tempfile.mkdtemp(prefix="ingest-pg-"))
    if os.geteuid() == 0:
        shutil.chown(d, "postgres", "postgres")
    pg = PrivatePostgres(d, free_port(), durable, settings)
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        shutil.rmtree(d, ignore_errors=True)
