"""How a worker leaves and what the broker can refuse it, against real Mosquitto and
PostgreSQL: a clean stop leaves the shared group (nothing is parked for it), a crash's
parked session is drained by `ingest drain-session`, a stop ends within seconds even
with the database unreachable, and a refused connection or a session taken over stops
the worker with a message instead of retrying forever."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ingest import config
from ingest.service import Service, drain_session
from ingest.sources.mqtt import MqttRefused
from tests.ingest.test_failures import rows, start_worker, stream, wait_rows, wait_subscribed
from tests.ingest.test_pipeline import make_cfg
from tests.mqttclient import publish
from tests.services import Broker, broker, free_port, running

pytestmark = pytest.mark.slow


def worker_cfg(b: Broker, db_url: str, client_id: str) -> config.Config:
    cfg = make_cfg(b, db_url)
    return cfg.replace(mqtt=dataclasses.replace(cfg.mqtt, client_id=client_id))


async def test_a_clean_stop_leaves_the_group(mqtt_broker: Broker, db_url: str) -> None:
    """Two workers share the group; one stops cleanly. Everything published after that
    reaches the database through the other: nothing is queued for the one that left."""
    msgs = stream(4_000)
    first, rest = msgs[:1_000], msgs[1_000:]
    async with running(worker_cfg(mqtt_broker, db_url, "w-a")) as a:
        async with running(worker_cfg(mqtt_broker, db_url, "w-b")):
            await asyncio.to_thread(publish, mqtt_broker.port, first)
            assert await wait_rows(db_url, len(first), 30) == len(first)
            assert a.source.session_present is False
        # w-b has stopped cleanly: its session is gone, so w-a takes every message.
        await asyncio.to_thread(publish, mqtt_broker.port, rest)
        assert await wait_rows(db_url, len(msgs), 30) == len(msgs)


def start(b: Broker, db_url: str, client_id: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {
        **os.environ,
        "INGEST_MQTT_URL": b.url,
        "INGEST_DATABASE_URL": db_url,
        "INGEST_MQTT_CLIENT_ID": client_id,
        "INGEST_HTTP_PORT": str(free_port()),
        **env,
    }
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "ingest.cli", "run"], env=full, stderr=err)


async def test_drain_session_commits_a_crashed_workers_queue(db_url: str, tmp_path: Path) -> None:
    msgs = stream(3_000)
    with broker() as b:
        async with running(worker_cfg(b, db_url, "w-live")):
            port = free_port()
            crashed = start_worker(b, db_url, port, tmp_path / "dead.log")
            try:
                await wait_subscribed(crashed, port, tmp_path / "dead.log")
            finally:
                crashed.send_signal(signal.SIGKILL)
                crashed.wait()
            await asyncio.to_thread(publish, b.port, msgs)
            await asyncio.sleep(1)
            # the broker parked part of the stream for the dead worker
            parked = len(msgs) - await rows(db_url)
            assert parked > 0
        committed = await drain_session(worker_cfg(b, db_url, "w-live"), "kill-test")
        assert committed >= parked
        assert await rows(db_url) == len(msgs)
        # the session is ended: a second drain finds nothing
        assert await drain_session(worker_cfg(b, db_url, "w-live"), "kill-test") == 0


def logged(proc: subprocess.Popen[bytes], log: Path, text: str, within: float = 60) -> None:
    """Wait until the worker has logged `text` (start-up takes seconds on a busy machine)."""
    deadline = time.monotonic() + within
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)


def ends_within(proc: subprocess.Popen[bytes], sig: int, seconds: float) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"worker still running {seconds:.0f} s after signal {sig}") from None


def test_sigterm_ends_the_worker_while_the_database_is_unreachable(tmp_path: Path) -> None:
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/ingest"
    with broker() as b:
        log = tmp_path / "w.log"
        proc = start(b, dead_db, "w-nodb", log, INGEST_DATABASE_MIGRATE_ON_START="false")
        logged(proc, log, "subscribing to")
        publish(b.port, stream(500))  # held by the worker, which cannot commit them
        ends_within(proc, signal.SIGTERM, 12)
        assert "messages not acknowledged: the session of w-nodb stays" in log.read_text()
        log2 = tmp_path / "w2.log"  # its own: the first worker's log names the database too
        waiting = start(b, dead_db, "w-nodb2", log2)
        logged(waiting, log2, "not reachable")  # waiting for its first migration
        ends_within(waiting, signal.SIGINT, 12)


async def test_a_refused_connection_stops_the_worker(tmp_path: Path, db_url: str) -> None:
    # mosquitto drops to its own user: the file must be where it can read it
    home = Path(tempfile.mkdtemp(prefix="ingest-pw-"))
    home.chmod(0o755)
    passwd = home / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "worker", "right"], check=True)
    passwd.chmod(0o644)
    with broker(extra=f"allow_anonymous false\npassword_file {passwd}\n") as b:
        cfg = make_cfg(b, db_url)
        url = f"mqtt://worker:wrong@127.0.0.1:{b.port}"
        bad = cfg.replace(mqtt=dataclasses.replace(cfg.mqtt, url=url))
        with pytest.raises(MqttRefused, match=r"127\.0\.0\.1:\d+.*refused the connection: reason 0x8[67]"):
            await asyncio.wait_for(Service(bad).run(), 20)
    shutil.rmtree(home, ignore_errors=True)


async def test_a_session_taken_over_stops_the_worker(mqtt_broker: Broker, db_url: str) -> None:
    first = Service(worker_cfg(mqtt_broker, db_url, "same-id"))
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.ready.wait(), 20)
    await asyncio.wait_for(first.source.wait_subscribed(), 10)
    async with running(worker_cfg(mqtt_broker, db_url, "same-id")):
        with pytest.raises(MqttRefused, match="taken over by another client with the same client id"):
            await asyncio.wait_for(task, 20)
