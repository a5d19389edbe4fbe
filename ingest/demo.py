"""The one-command demo: brings up what is missing — a broker and a database — then
the service and a simulated fleet, prints where to look, and on Ctrl-C stops
everything it started.

Transport: `--transport mqtt` (default) or `amqp`: a private 3-node RabbitMQ cluster
(ingest.localcluster) that the devices publish to over MQTT 3.1.1 and the worker
consumes over AMQP (docs/transport.md).

Broker (mqtt): `INGEST_MQTT_URL` if set; else the system's mosquitto started as a child
with a generated configuration on a free loopback port; else a broker already
listening on 127.0.0.1:1883. Database: `INGEST_DATABASE_URL` if set; else the local
server on 127.0.0.1:5432 (database `ingest_demo`, created if missing); else a private
PostgreSQL in `.run/postgres` under the working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from ingest import config as config_mod
from ingest.clidb import CliError
from ingest.config import Config, Token, hash_token
from ingest.localcluster import declare_queue, rabbit_cluster
from ingest.localservices import MOSQUITTO, Broker, PrivatePostgres, free_port
from ingest.service import Service

log = logging.getLogger("ingest.demo")
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def demo_broker(env: dict[str, str], workdir: Path) -> Iterator[str]:
    if env.get("INGEST_MQTT_URL"):
        yield env["INGEST_MQTT_URL"]
        return
    if Path(MOSQUITTO).exists():
        d = workdir / "mosquitto"
        d.mkdir(parents=True, exist_ok=True)
        b = Broker(free_port(), d)
        b.start()
        log.info("started mosquitto on 127.0.0.1:%d (config %s)", b.port, d / "mosquitto.conf")
        try:
            yield b.url
        finally:
            b.stop()
        return
    if _listening("127.0.0.1", 1883):
        log.warning("no mosquitto binary; using the broker on 127.0.0.1:1883")
        yield "mqtt://127.0.0.1:1883"
        return
    raise SystemExit("demo: no MQTT broker: install mosquitto (scripts/setup) or set INGEST_MQTT_URL")


async def _ensure_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("created database %s", name)
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def demo_database(env: dict[str, str], workdir: Path) -> Iterator[str]:
    if env.get("INGEST_DATABASE_URL"):
        yield env["INGEST_DATABASE_URL"]
        return
    local: str | None = None
    if _listening("127.0.0.1", 5432):
        try:
            local = asyncio.run(_ensure_database(LOCAL_PG, "ingest_demo"))
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("the local PostgreSQL on 5432 is not usable (%s)", exc)
    if local is not None:
        yield local
        return
    d = workdir / "postgres"
    d.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(d, "postgres", "postgres")
    pg = PrivatePostgres(d, free_port())
    if not (d / "data" / "PG_VERSION").exists():
        log.info("initialising a private PostgreSQL in %s", d)
        pg.init()
    pg.start()
    log.info("started a private PostgreSQL on 127.0.0.1:%d", pg.port)
    try:
        yield asyncio.run(_ensure_database(pg.url, "ingest_demo"))
    finally:
        pg.stop()


@contextlib.contextmanager
def demo_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """The durable transport: (the MQTT URL devices publish to, the worker's settings)."""
    log.info("starting a private 3-node RabbitMQ cluster (20-60 s)")
    with rabbit_cluster() as cluster:
        asyncio.run(declare_queue(cluster.nodes[0].amqp_url))
        log.info("RabbitMQ nodes: %s", cluster.amqp_urls)
        env = {"INGEST_SOURCE_KIND": "amqp", "INGEST_AMQP_URL": cluster.amqp_urls}
        yield f"mqtt://127.0.0.1:{cluster.nodes[0].mqtt_port}", env


def _simulator(mqtt_url: str, api: str, admin: str, args: Any, ocpp_port: int,
               sl651_port: int) -> subprocess.Popen[bytes]:
    parts = mqtt_url.split("://", 1)[1].rsplit(":", 1)
    host, port = parts[0].split("@")[-1], parts[1] if len(parts) > 1 else "1883"
    cmd = [sys.executable, "-m", "ingest.simulate", "--host", host, "--port", port,
           "--scale", str(args.scale), "--speed", str(args.speed), "--seed", str(args.seed),
           "--duration", str(args.duration or 86400), "--bad-share", str(args.bad_share),
           "--provision", api, "--token", admin,
           # Chargers and reservoirs show the edge endpoints: OCPP 1.6J and SL651 direct.
           "--via", "ocpp-ws,sl651-tcp", "--ocpp-url", f"ws://127.0.0.1:{ocpp_port}/ocpp",
           "--sl651", f"127.0.0.1:{sl651_port}"]
    if getattr(args, "transport", "mqtt") == "amqp":
        cmd += ["--mqtt-version", "3.1.1"]  # RabbitMQ 3.10's MQTT listener
    return subprocess.Popen(cmd)


async def _run(cfg: Config, mqtt_url: str, args: Any, read: str, admin: str) -> int:
    service = Service(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
        return 1
    await service.source.wait_subscribed()
    assert service.ocpp is not None and service.sl651 is not None
    await service.ocpp.listening.wait()
    await service.sl651.listening.wait()
    ocpp_port, sl651_port = service.ocpp.port or 0, service.sl651.port or 0
    base = f"http://{cfg.http.host}:{service.http_port}"
    print(
        f"\nThe service is running with a simulated fleet (Ctrl-C stops everything).\n"
        f"  status page   {base}/\n"
        f"  metrics       {base}/metrics\n"
        f"  API           curl -H 'Authorization: Bearer {read}' {base}/api/v1/indicators\n"
        f"  dead letters  curl -H 'Authorization: Bearer {admin}' {base}/api/v1/dead-letters\n"
        f"  admin token   {admin}\n"
        f"  broker        {mqtt_url}   database {cfg.database.url}\n"
        f"  OCPP 1.6J     ws://127.0.0.1:{ocpp_port}/ocpp/<id> (chargers)   "
        f"SL651 centre 127.0.0.1:{sl651_port} (reservoirs)\n"
        f"In another shell, point the other commands at this database:\n"
        f"  export INGEST_DATABASE_URL={shlex.quote(cfg.database.url)}\n"
        f"  ingest indicators; ingest dead-letters list\n",
        flush=True,
    )
    sim = _simulator(mqtt_url, base, admin, args, ocpp_port, sl651_port)
    try:
        if args.duration:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), args.duration)
        else:
            await asyncio.shield(task)
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(sim.wait, 10)
            except subprocess.TimeoutExpired:
                sim.kill()
        service.stop()
        await task
    print(f"demo stopped: {service.pipeline.committed_messages} messages committed", flush=True)
    return 0


def tokens(path: Path | None) -> tuple[str, str]:
    """The demo's (read, admin) tokens: kept in `path` across runs (made on the first,
    readable by its owner only), new ones every run without a file."""
    if path is not None and path.is_file():
        found = dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)
        if found.get("read") and found.get("admin"):
            return found["read"], found["admin"]
    read, admin = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"read={read}\nadmin={admin}\n")
    return read, admin


def check_port(host: str, port: int) -> None:
    """Fail before starting anything when the HTTP port is taken."""
    if port == 0:
        return
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise CliError(f"port {port} on {host} is taken (another demo or service?): choose another "
                           "with --http-port N, or --http-port 0 for any free port", 2) from None  # fmt: skip


def main(args: Any) -> int:
    env = dict(os.environ)
    workdir = Path(args.workdir).resolve()
    check_port("127.0.0.1", args.http_port)
    read, admin = tokens(Path(args.token_file) if args.token_file else None)
    with contextlib.ExitStack() as stack:
        if getattr(args, "transport", "mqtt") == "amqp":
            mqtt_url, transport_env = stack.enter_context(demo_cluster())
            env.update(transport_env)
        else:
            mqtt_url = stack.enter_context(demo_broker(env, workdir))
        db_url = stack.enter_context(demo_database(env, workdir))
        env.update({"INGEST_MQTT_URL": mqtt_url, "INGEST_DATABASE_URL": db_url,
                    "INGEST_HTTP_PORT": str(args.http_port), "INGEST_ROLLUP_INTERVAL_S": "10",
                    "INGEST_MQTT_CLIENT_ID": "ingest-demo",
                    "INGEST_OCPP_ENABLED": "true", "INGEST_OCPP_PORT": "0",
                    "INGEST_SL651_ENABLED": "true", "INGEST_SL651_PORT": "0"})
        cfg = config_mod.load(args.config, env)
        demo_tokens = (
            Token("demo-read", "read", hash_token(read)),
            Token("demo-admin", "admin", hash_token(admin)),
        )
        cfg = cfg.replace(http=replace(cfg.http, tokens=cfg.http.tokens + demo_tokens))
        return asyncio.run(_run(cfg, mqtt_url, args, read, admin))
