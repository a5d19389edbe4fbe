"""Wiring: builds the pipeline, the source of the devices' messages (`[source] kind`:
the MQTT broker or the RabbitMQ cluster's queue), the edge endpoints (OCPP central
system, SL651 centre) when enabled, and the HTTP server from a Config, and runs them
until asked to stop. The only place where the parts meet."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import ssl
import time
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web

from ingest import deadletters
from ingest.appctx import AppContext
from ingest.clidb import where
from ingest.config import Config
from ingest.http import make_app
from ingest.indicators import IndicatorCollector, Rollup, load_catalogue
from ingest.metrics import ServiceMetrics
from ingest.migrate import migrate
from ingest.pipeline import Pipeline
from ingest.sources.amqp import AmqpSource
from ingest.sources.connections import ConnectionRegistry
from ingest.sources.mqtt import MqttRefused, MqttSource
from ingest.sources.ocpp import OcppSource
from ingest.sources.ocpp_store import OcppStore
from ingest.sources.sl651 import Sl651Source
from ingest.writer import TRANSIENT

log = logging.getLogger(__name__)


class DatabaseTlsError(Exception):
    """The database's TLS certificate was not accepted: retrying cannot help."""


async def connect_db(cfg: Config) -> Any:
    """A connection with the URL's settings, TLS (sslmode, sslrootcert, sslcert,
    sslkey) included: migration, the writers and the API's pool all connect so."""
    try:
        return await asyncpg.connect(cfg.database.url, timeout=cfg.database.connect_timeout_s)
    except ssl.SSLCertVerificationError as exc:
        raise DatabaseTlsError(
            f"the database at {where(cfg.database.url)}: its TLS certificate was not accepted "
            f"({exc.reason}: {exc.verify_message}; certificate verify failed): check sslrootcert "
            "and sslmode in database.url"
        ) from None


STOP_DRAIN_S = 4.0  # a clean stop waits this long for the database to commit what is held
DRAIN_SESSION_S = 3600.0  # drain-session: the longest it keeps taking a parked queue


async def wait_and_migrate(cfg: Config) -> None:
    """Migrate at start, waiting for the database if it is not up yet."""
    delay = 0.2
    while True:
        try:
            conn = await connect_db(cfg)
        except TRANSIENT as exc:
            at = where(cfg.database.url)
            log.warning("database at %s not reachable (%s); retry in %.1fs", at, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, cfg.database.retry_max_s)
            continue
        try:
            await migrate(conn)
            return
        finally:
            await conn.close()


class Service:
    def __init__(self, cfg: Config, writers: int = 2, subscribe: bool = True) -> None:
        self.cfg = cfg
        self.metrics = ServiceMetrics()
        self.pipeline = Pipeline(cfg, lambda: connect_db(cfg), self.metrics, writers=writers)
        self.source: MqttSource | AmqpSource
        if cfg.source.kind == "amqp":
            self.source = AmqpSource(cfg.amqp, cfg.mqtt.prefix, self.pipeline)
        else:
            self.source = MqttSource(cfg.mqtt, self.pipeline, self.metrics, subscribe=subscribe)
        self.pipeline.sources.append(self.source)
        self.pipeline.on_failure = self.stop
        self.started = time.time()
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.ready = asyncio.Event()
        self.source_failure: BaseException | None = None
        # The catalogue loads (and is validated) before anything connects.
        self.rollup = Rollup(cfg.rollup, load_catalogue(cfg.rollup.catalogue or None))
        self.metrics.registry.register(IndicatorCollector(self.rollup))
        self.pool: Any = None
        # The edge endpoints, when enabled: sources like the MQTT one, built in run()
        # (the central system answers from the database, through the pool).
        self.ocpp: OcppSource | None = None
        self.sl651: Sl651Source | None = None
        if cfg.sl651.enabled:
            self.sl651 = Sl651Source(cfg.sl651, cfg.mqtt.prefix, self.pipeline, self.metrics.registry)

    def health(self) -> dict[str, Any]:
        ok = self.source.connected
        return {
            "status": "ok" if ok else "degraded",
            "source": self.source.name,
            "mqtt_connected": self.source.connected,  # the source's connection, whichever it is
            "pending_messages": self.pipeline.pending_messages,
            "committed_messages": self.pipeline.committed_messages,
            "edge_connections": {s.name: s.connections for s in self._edge()},
            "last_commit_age_s": self._commit_age(),
            "uptime_s": round(time.time() - self.started, 1),
        }

    def _commit_age(self) -> float | None:
        """Seconds since the last commit, None before the first."""
        at = self.metrics.registry.get_sample_value("ingest_last_commit_timestamp_seconds") or 0.0
        return round(time.time() - at, 1) if at else None

    def stop(self) -> None:
        self._stop.set()

    def _edge(self) -> list[OcppSource | Sl651Source]:
        return [s for s in (self.ocpp, self.sl651) if s is not None]

    def _source_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.source_failure = task.exception()
            if isinstance(self.source_failure, MqttRefused):
                log.critical("%s; the worker stops", self.source_failure)
            else:
                name = task.get_name()
                log.critical("the %s source failed: %r; the worker stops", name, self.source_failure)
            self.stop()

    async def run(self) -> None:
        if self.cfg.database.migrate_on_start:
            # A stop asked for while the database is still unreachable ends the wait.
            migrating = asyncio.ensure_future(wait_and_migrate(self.cfg))
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([migrating, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not migrating.done():
                migrating.cancel()
                await asyncio.gather(migrating, return_exceptions=True)
                log.info("stopped before the database was reachable")
                return
            migrating.result()
        # Reads of the API and the rollup; min_size=0 so that a database that is down
        # at start does not stop the worker (the writers retry; the broker holds the messages).
        self.pool = await asyncpg.create_pool(
            self.cfg.database.url, min_size=0, max_size=4, timeout=self.cfg.database.connect_timeout_s
        )
        ctx = AppContext(
            self.cfg, self.metrics.registry, pool=self.pool, rollup=self.rollup, health=self.health
        )
        app = make_app(ctx)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.http.host, self.cfg.http.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.http_port = server.sockets[0].getsockname()[1]
        log.info("HTTP on http://%s:%s (/metrics, /healthz)", self.cfg.http.host, self.http_port)
        self.pipeline.start()
        mqtt_task = asyncio.create_task(self.source.run(), name=self.source.name)
        mqtt_task.add_done_callback(self._source_done)
        if self.cfg.ocpp.enabled:
            store = OcppStore(self.pool, self.cfg.mqtt.client_id)
            self.ocpp = OcppSource(
                self.cfg.ocpp, self.cfg.mqtt.prefix, self.pipeline, store, self.metrics.registry
            )
        if self.sl651 is not None:
            self.sl651.connection_registry = ConnectionRegistry(self.pool, self.cfg.mqtt.client_id, "sl651")
        edge_tasks = []
        for edge in self._edge():
            self.pipeline.sources.append(edge)
            edge_tasks.append(asyncio.create_task(edge.run(), name=edge.name))
            edge_tasks[-1].add_done_callback(self._source_done)
        rollup_task = asyncio.create_task(self.rollup.run_forever(self.pool), name="rollup")
        ret = self.cfg.retention
        retention_task = asyncio.create_task(
            deadletters.keep_pruning(self.pool, timedelta(days=ret.dead_letters_days), ret.interval_s),
            name="retention",
        )
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            # Leave the group and commit what the session still delivers, then end
            # the session; bounded, so that a stop ends within ~10 s in every state.
            log.info("stopping: committing what was received")
            if self.pipeline.failure is None and self.source_failure is None:
                await self.source.stop_intake()
            else:
                self.source.pause()
            for edge in self._edge():
                await edge.stop_intake()
            await self.pipeline.stop(STOP_DRAIN_S)
            await self.source.close()
            for edge in self._edge():
                await edge.close()
            for t in edge_tasks:
                t.cancel()
            await asyncio.gather(*edge_tasks, return_exceptions=True)
            mqtt_task.cancel()
            rollup_task.cancel()
            retention_task.cancel()
            await asyncio.gather(mqtt_task, rollup_task, retention_task, return_exceptions=True)
            await self._runner.cleanup()
            await self.pool.close()
            log.info("stopped; %d messages committed", self.pipeline.committed_messages)
        if self.pipeline.failure is not None:
            raise RuntimeError("a database writer failed") from self.pipeline.failure
        if isinstance(self.source_failure, MqttRefused):
            raise self.source_failure
        if self.source_failure is not None:
            raise RuntimeError(f"the {self.source.name} source failed") from self.source_failure


async def drain_session(cfg: Config, client_id: str) -> int:
    """Take over the parked session of `client_id` (a worker that is gone), commit
    what the broker holds for it, and end the session. Returns the messages committed."""
    cfg = cfg.replace(
        mqtt=dataclasses.replace(cfg.mqtt, client_id=client_id),
        source=dataclasses.replace(cfg.source, kind="mqtt"),
        http=dataclasses.replace(cfg.http, port=0),
    )
    service = Service(cfg, subscribe=False)
    assert isinstance(service.source, MqttSource), "drain-session is for the MQTT source"
    task = asyncio.create_task(service.run(), name="drain-session")
    connected = asyncio.create_task(service.source.wait_connected())
    await asyncio.wait([task, connected], return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        log.info("draining the session of %s", client_id)
        # Quiet means: every message the broker sent was committed and acknowledged,
        # and a PING round trip brought no more.
        await service.source.stop_intake(within=DRAIN_SESSION_S)
        service.stop()
    connected.cancel()
    await task
    return service.pipeline.committed_messages


async def run(cfg: Config, early: list[int] | None = None) -> None:
    """Run one worker until SIGINT or SIGTERM; `early` holds signals that arrived
    before the event loop could take them."""
    service = Service(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    if early:
        service.stop()
    await service.run()
