"""TLS on every connection the service opens, against real servers and a private CA
the tests make (tests/tlsca.py): a private Mosquitto with a TLS listener (and one that
requires a client certificate), and a private PostgreSQL with ssl on that refuses any
connection without TLS and a client certificate. Verification is on by default; a
wrong CA or server name stops with an error naming the broker or the database."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from ingest.config import Config, ConfigError, MqttConfig, load
from ingest.metrics import ServiceMetrics
from ingest.service import DatabaseTlsError, Service
from ingest.sources import mqtt_wire as wire
from ingest.sources.mqtt import MqttRefused, MqttSource, tls_context
from tests.fleet import known_fleet
from tests.mqttclient import publish
from tests.services import Broker, PrivatePostgres, broker, free_port, private_postgres, running
from tests.tlsca import PrivateCA, make_ca

TOPIC = "gz/v1/reservoir/r1/telemetry"


@pytest.fixture(scope="module")
def ca() -> Iterator[PrivateCA]:
    # Not under pytest's tmp_path (mode 0700): the servers' users must read the files.
    d = Path(tempfile.mkdtemp(prefix="ingest-tls-"))
    d.chmod(0o755)
    try:
        yield make_ca(d / "ca")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _tls_listener(ca: PrivateCA, port: int, require_certificate: bool) -> str:
    conf = f"listener {port} 127.0.0.1\ncafile {ca.ca}\ncertfile {ca.server_cert}\nkeyfile {ca.server_key}\n"
    return conf + ("require_certificate true\n" if require_certificate else "")


@dataclasses.dataclass
class TlsBroker:
    broker: Broker
    tls_port: int  # server certificate only
    mtls_port: int  # client certificate required

    def url(self, port: int) -> str:
        return f"mqtts://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def tls_broker(ca: PrivateCA) -> Iterator[TlsBroker]:
    """Mosquitto with its plain listener (for the test's publisher) and two TLS ones."""
    tls_port, mtls_port = free_port(), free_port()
    extra = _tls_listener(ca, tls_port, False) + _tls_listener(ca, mtls_port, True)
    with broker(extra=extra) as b:
        yield TlsBroker(b, tls_port, mtls_port)


class Recorder:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.last = asyncio.Event()

    def on_messages(self, source: Any, epoch: Any, messages: list[wire.Message]) -> None:
        for _, payload, pid in messages:
            self.payloads.append(payload)
            source.ack(epoch, [pid])
            if payload == b"last":
                self.last.set()

    def on_rejected(self, *args: Any) -> None:
        raise AssertionError("the MQTT source refuses nothing itself")


async def receive_over(tb: TlsBroker, cfg: MqttConfig) -> list[bytes]:
    """Connect with `cfg`, publish three messages on the plain listener, return what
    arrived over TLS."""
    rec = Recorder()
    src = MqttSource(cfg, rec, ServiceMetrics())
    task = asyncio.create_task(src.run())
    try:
        await asyncio.wait_for(src.wait_subscribed(), 15)
        await asyncio.to_thread(publish, tb.broker.port, [(TOPIC, b"a"), (TOPIC, b"b"), (TOPIC, b"last")])
        await asyncio.wait_for(rec.last.wait(), 15)
        return rec.payloads
    finally:
        await src.close()
        await asyncio.wait_for(task, 10)


async def refused(cfg: MqttConfig) -> str:
    """Run a source that must stop with MqttRefused; its message."""
    src = MqttSource(cfg, Recorder(), ServiceMetrics())
    with pytest.raises(MqttRefused) as err:
        await asyncio.wait_for(src.run(), 15)
    return str(err.value)


async def test_mqtts_verifies_the_broker_with_the_private_ca(tls_broker: TlsBroker, ca: PrivateCA) -> None:
    cfg = MqttConfig(url=tls_broker.url(tls_broker.tls_port), client_id="tls-1", tls_ca=str(ca.ca))
    assert await receive_over(tls_broker, cfg) == [b"a", b"b", b"last"]


async def test_server_name_is_what_the_certificate_is_checked_against(
    tls_broker: TlsBroker, ca: PrivateCA
) -> None:
    base = MqttConfig(url=tls_broker.url(tls_broker.tls_port), client_id="tls-2", tls_ca=str(ca.ca))
    named = dataclasses.replace(base, tls_server_name="broker.test")  # in the certificate
    assert await receive_over(tls_broker, named) == [b"a", b"b", b"last"]
    why = await refused(dataclasses.replace(base, tls_server_name="other.test"))
    assert f"mqtts://127.0.0.1:{tls_broker.tls_port}" in why
    assert "other.test" in why and "mqtt.tls_server_name" in why


async def test_a_wrong_ca_stops_the_source_naming_the_broker(tls_broker: TlsBroker, ca: PrivateCA) -> None:
    cfg = MqttConfig(url=tls_broker.url(tls_broker.tls_port), client_id="tls-3", tls_ca=str(ca.wrong_ca))
    why = await refused(cfg)
    assert f"mqtts://127.0.0.1:{tls_broker.tls_port}" in why
    assert "certificate verify failed" in why and "mqtt.tls_ca" in why
    # The system's CAs do not know the private one either: verification is on by default.
    why = await refused(dataclasses.replace(cfg, tls_ca=""))
    assert "certificate verify failed" in why


async def test_verification_off_only_when_asked(tls_broker: TlsBroker, ca: PrivateCA) -> None:
    cfg = MqttConfig(
        url=tls_broker.url(tls_broker.tls_port), client_id="tls-4", tls_ca=str(ca.wrong_ca), tls_verify=False
    )
    assert await receive_over(tls_broker, cfg) == [b"a", b"b", b"last"]


async def test_client_certificate_for_a_broker_that_requires_one(
    tls_broker: TlsBroker, ca: PrivateCA
) -> None:
    cfg = MqttConfig(
        url=tls_broker.url(tls_broker.mtls_port),
        client_id="tls-5",
        tls_ca=str(ca.ca),
        tls_cert=str(ca.client_cert),
        tls_key=str(ca.client_key),
    )
    assert await receive_over(tls_broker, cfg) == [b"a", b"b", b"last"]


def test_tls_settings_are_checked_without_connecting(ca: PrivateCA, tmp_path: Path) -> None:
    ok = {"INGEST_MQTT_URL": "mqtts://broker.example:8883", "INGEST_MQTT_TLS_CA": str(ca.ca)}
    assert load(env=ok).mqtt.tls_ca == str(ca.ca)
    cases = {
        "mqtt.tls_ca: set, but mqtt.url is not": {**ok, "INGEST_MQTT_URL": "mqtt://broker.example"},
        "mqtt.tls_ca: no such file": {**ok, "INGEST_MQTT_TLS_CA": str(tmp_path / "missing.pem")},
        "mqtt.tls_key: set without mqtt.tls_cert": {**ok, "INGEST_MQTT_TLS_KEY": str(ca.client_key)},
        "database.url: sslmode 'verify-all'": {"INGEST_DATABASE_URL": "postgresql://h/db?sslmode=verify-all"},
        "database.url: sslrootcert: no such file": {
            "INGEST_DATABASE_URL": f"postgresql://h/db?sslrootcert={tmp_path}/none.pem"
        },
    }
    for message, env in cases.items():
        with pytest.raises(ConfigError, match=message):
            load(env=env)
    # Files that exist but do not load are named when the source is built, before it connects.
    mismatched = MqttConfig(url="mqtts://h", tls_cert=str(ca.client_cert), tls_key=str(ca.server_key))
    with pytest.raises(ConfigError, match=r"mqtt\.tls_cert"):
        tls_context(mismatched)


# ---- PostgreSQL ----


@pytest.fixture(scope="module")
def tls_pg(ca: PrivateCA) -> Iterator[PrivatePostgres]:
    """A private PostgreSQL that takes TCP connections only over TLS and only with a
    client certificate for the user (CN=postgres) signed by the private CA."""
    hba = ca.dir / "pg_hba.conf"
    hba.write_text(
        "local all all trust\n"
        "hostnossl all all 127.0.0.1/32 reject\n"
        "hostssl all all 127.0.0.1/32 trust clientcert=verify-full\n"
    )
    hba.chmod(0o644)
    settings = (
        "ssl=on",
        f"ssl_cert_file={ca.server_cert}",
        f"ssl_key_file={ca.key_for('postgres', ca.server_key)}",
        f"ssl_ca_file={ca.ca}",
        f"hba_file={hba}",
    )
    with private_postgres(settings=settings) as pg:
        yield pg


def tls_url(pg: PrivatePostgres, ca: PrivateCA, database: str = "postgres", **override: str) -> str:
    params = {
        "sslmode": "verify-full",
        "sslrootcert": str(ca.ca),
        "sslcert": str(ca.client_cert),
        "sslkey": str(ca.client_key),
        **override,
    }
    query = "&".join(f"{k}={v}" for k, v in params.items() if v)
    return f"postgresql://postgres@127.0.0.1:{pg.port}/{database}?{query}"


@pytest.fixture
async def tls_db(tls_pg: PrivatePostgres, ca: PrivateCA) -> AsyncIterator[str]:
    conn = await asyncpg.connect(tls_url(tls_pg, ca))
    try:
        await conn.execute("CREATE DATABASE tls_test")
    finally:
        await conn.close()
    try:
        yield tls_url(tls_pg, ca, "tls_test")
    finally:
        conn = await asyncpg.connect(tls_url(tls_pg, ca))
        try:
            await conn.execute("DROP DATABASE tls_test WITH (FORCE)")
        finally:
            await conn.close()


def service_cfg(tb: TlsBroker, ca: PrivateCA, db_url: str) -> Config:
    return load(
        env={
            "INGEST_MQTT_URL": tb.url(tb.tls_port),
            "INGEST_MQTT_TLS_CA": str(ca.ca),
            "INGEST_MQTT_CLIENT_ID": "tls-service",
            "INGEST_DATABASE_URL": db_url,
            "INGEST_HTTP_PORT": "0",
            "INGEST_BATCH_MAX_AGE_MS": "50",
        }
    )


async def test_every_connection_of_the_service_is_tls(
    tls_broker: TlsBroker, ca: PrivateCA, tls_db: str
) -> None:
    """Migration, the writers and the API's pool all connect with the URL's TLS
    settings: the server refuses anything else, and pg_stat_ssl shows each of them."""
    msgs, _ = known_fleet(datetime.now(UTC))
    async with running(service_cfg(tls_broker, ca, tls_db)) as svc:
        await asyncio.to_thread(publish, tls_broker.broker.port, msgs)
        await asyncio.wait_for(svc.pipeline.wait_committed(len(msgs)), 30)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{svc.http_port}/api/v1/devices") as resp,
        ):
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["devices"]
        conn = await asyncpg.connect(tls_db)
        try:
            seen = await conn.fetch(
                "SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                "WHERE a.datname = 'tls_test' AND a.pid <> pg_backend_pid() AND a.client_port IS NOT NULL"
            )
        finally:
            await conn.close()
    assert len(seen) >= 3  # two writers and the pool's connection, at least
    assert {(r["ssl"], r["client_dn"]) for r in seen} == {(True, "/CN=postgres")}


async def test_a_wrong_ca_stops_the_service_naming_the_database(
    tls_broker: TlsBroker, ca: PrivateCA, tls_pg: PrivatePostgres
) -> None:
    cfg = service_cfg(tls_broker, ca, tls_url(tls_pg, ca, sslrootcert=str(ca.wrong_ca)))
    with pytest.raises(DatabaseTlsError) as err:
        await asyncio.wait_for(Service(cfg).run(), 30)
    assert f"127.0.0.1:{tls_pg.port}/postgres" in str(err.value)
    assert "certificate verify failed" in str(err.value)


def cli(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INGEST_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_command_line_connects_with_the_url_tls_settings(tls_pg: PrivatePostgres, ca: PrivateCA) -> None:
    done = cli("migrate", db_url=tls_url(tls_pg, ca))
    assert done.returncode == 0, done.stderr
    wrong = cli("migrate", db_url=tls_url(tls_pg, ca, sslrootcert=str(ca.wrong_ca)))
    assert wrong.returncode != 0
    assert f"127.0.0.1:{tls_pg.port}/postgres" in wrong.stderr
    assert "certificate verify failed" in wrong.stderr and "sslrootcert" in wrong.stderr
    # Without the client certificate the server refuses: sslcert/sslkey are what got in.
    anonymous = cli("migrate", db_url=tls_url(tls_pg, ca, sslcert="", sslkey=""))
    assert anonymous.returncode != 0 and "certificate" in anonymous.stderr
    plain = cli("migrate", db_url=tls_url(tls_pg, ca, sslmode="disable"))
    assert plain.returncode != 0 and "no encryption" in plain.stderr
