"""Fixtures for the simulator tests: a small simulated run and a real Mosquitto."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import adapters
from ingest.dispatch import Dispatcher
from ingest.simulate import Message, SimConfig, Simulation, build_fleet

MOSQUITTO = "/usr/sbin/mosquitto"
START = datetime(2026, 1, 12, tzinfo=UTC).timestamp()  # winter: icing weather possible


def run(scale: float = 0.01, hours: float = 6.0, seed: int = 1, classes: tuple[str, ...] | None = None,
        start: float = START, **config: object) -> list[Message]:
    fleet = build_fleet(scale, seed, classes) if classes else build_fleet(scale, seed)
    sim = Simulation(fleet, SimConfig(start=start, seed=seed, **config))  # type: ignore[arg-type]
    return list(sim.run(start + hours * 3600))


@pytest.fixture(scope="session")
def mixed_run() -> list[Message]:
    """Every class, deliberate faults and outages: shared by several tests."""
    return run(hours=6.0, bad_share=0.05, churn_per_day=3.0)


@pytest.fixture(scope="session")
def dispatcher() -> Dispatcher:
    return Dispatcher(adapters.ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A real Mosquitto on a free loopback port; yields the port."""
    if not shutil.which(MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    # Unlimited queues: the default (1,000) drops QoS 1 messages under load (LIMITS.md).
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                    "persistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
