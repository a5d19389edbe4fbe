"""SL 651-2014 centre: an asyncio TCP server that reservoir RTUs (through their 4G
DTUs) dial.

Owns the listening socket and the stations' connections only. Each connection's
bytes go through its own `sl651_link.Framer`; every whole uplink message becomes
one message for the intake with the topic of the MQTT channel,
`<prefix>/v1/reservoir/<station address>/sl651`, so the pipeline decodes it with
the same adapter as a frame a DTU forwards onto MQTT. The epoch is the connection;
a message's token is its `Reply` (None when the mode asks for no acknowledgement).
The downlink acknowledgements are written only when the intake hands the tokens
back, after the commit; a connection that closed in between drops them and the
station sends again (the writer stores a repeated report once).

Frames the link layer refuses (bad CRC, an incomplete multi-packet message, the
ASCII form) go to `intake.on_rejected` and are never answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ingest.config import Sl651Config
from ingest.sources import Intake, Message
from ingest.sources.connections import ConnectionRegistry
from ingest.sources.sl651_link import EOT, ESC, Framer, Refused, Reply, Uplink, downlink

log = logging.getLogger(__name__)

__all__ = ["Sl651Source"]


class _Connection(asyncio.Protocol):
    def __init__(self, source: Sl651Source) -> None:
        self.source = source
        self.framer = Framer(source.cfg.mode)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.since = datetime.now(UTC)
        self.stations: set[str] = set()  # the addresses of its valid frames so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.source._opened(self)

    def data_received(self, data: bytes) -> None:
        self.source._events(self, self.framer.feed(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.source._closed(self, self.framer.close())


class Sl651Source:
    """The centre as a source of the pipeline (see `ingest.sources.Source`)."""

    name = "sl651"

    def __init__(
        self,
        cfg: Sl651Config,
        prefix: str,
        intake: Intake,
        registry: CollectorRegistry | None = None,
        connection_registry: ConnectionRegistry | None = None,
    ) -> None:
        self.cfg = cfg
        # The stations connected now, by their valid frames' addresses (GET
        # /api/v1/connections); None: not kept (no database)
        self.connection_registry = connection_registry
        self.prefix = prefix
        self.intake = intake
        self._end = ESC if cfg.reply_end == "ESC" else EOT
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._paused = False
        self._accepting = True
        self._stopped = asyncio.Event()
        self.port: int | None = None  # the bound port (cfg.port may be 0)
        self.listening = asyncio.Event()
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self._m_connections = Gauge(
            "ingest_sl651_connections", "Stations (TCP connections) connected to the SL651 centre", registry=r
        )
        self._m_frames = Counter(
            "ingest_sl651_frames_total", "SL651 uplink messages, by outcome", ["outcome"], registry=r
        )
        self._m_garbage = Counter(
            "ingest_sl651_skipped_bytes_total", "Bytes between SL651 frames that were no frame", registry=r
        )
        self._m_acks = Counter(
            "ingest_sl651_acks_total", "Downlink acknowledgements sent after commit", registry=r
        )

    # ---- connections ----

    def _opened(self, conn: _Connection) -> None:
        if not self._accepting:
            assert conn.transport is not None
            conn.transport.close()
            return
        self._connections.add(conn)
        self._m_connections.set(len(self._connections))
        if self._paused and conn.transport is not None:
            conn.transport.pause_reading()
        log.debug("SL651 station connected from %s", conn.peer)

    def _closed(self, conn: _Connection, events: list[Uplink | Refused]) -> None:
        self._connections.discard(conn)
        self._m_connections.set(len(self._connections))
        if events:
            self._events(conn, events)
        if self.connection_registry is not None:
            for station in conn.stations:
                self.connection_registry.disconnected(station, conn.since)

    def _events(self, conn: _Connection, events: list[Uplink | Refused]) -> None:
        skipped = conn.framer.garbage_bytes
        if skipped:
            conn.framer.garbage_bytes = 0
            self._m_garbage.inc(skipped)
        if not events:
            return
        messages: list[Message] = []
        for ev in events:
            if isinstance(ev, Uplink):
                messages.append((self._topic(ev.station), ev.frame, ev.reply))
                if ev.station not in conn.stations and self._accepting:
                    conn.stations.add(ev.station)
                    if self.connection_registry is not None:
                        self.connection_registry.connected(ev.station, conn.peer, conn.since)
                continue
            self._m_frames.labels("refused").inc()
            log.info("SL651 frame from %s refused: %s: %s", conn.peer, ev.reason, ev.detail)
            station = ev.station or "unknown"
            self.intake.on_rejected(self, conn, self._topic(station), ev.payload, ev.reason, ev.detail, None)
        if messages:
            self._m_frames.labels("received").inc(len(messages))
            self.intake.on_messages(self, conn, messages)

    def _topic(self, station: str) -> str:
        return f"{self.prefix}/v1/reservoir/{station}/sl651"

    # ---- the Source interface ----

    def ack(self, epoch: Hashable, tokens: list[Any]) -> None:
        conn = epoch
        if not isinstance(conn, _Connection) or conn not in self._connections:
            return  # the station hung up: it sends again, and the repeat is stored once
        transport = conn.transport
        if transport is None or transport.is_closing():
            return
        now = datetime.now(UTC)
        replies = [downlink(t, now, self._end) for t in tokens if isinstance(t, Reply)]
        if replies:
            transport.write(b"".join(replies))
            self._m_acks.inc(len(replies))

    def pause(self) -> None:
        self._paused = True
        for conn in self._connections:
            if conn.transport is not None:
                conn.transport.pause_reading()

    def resume(self) -> None:
        self._paused = False
        for conn in self._connections:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()

    @property
    def connected(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.cfg.host, self.cfg.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("SL651 centre listening on %s:%s (mode %s)", self.cfg.host, self.port, self.cfg.mode)
        self.listening.set()
        if self.connection_registry is None:
            await self._stopped.wait()
            return
        keeper = asyncio.create_task(self.connection_registry.run(), name="sl651-connections")
        try:
            await self._stopped.wait()
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def stop_intake(self) -> None:
        """Accept no new stations and read no more frames; the pipeline then commits
        and acknowledges what it holds."""
        self._accepting = False
        if self._server is not None:
            self._server.close()
        self.pause()

    async def close(self) -> None:
        await self.stop_intake()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.close()
        self._stopped.set()
        if self._server is not None:
            await self._server.wait_closed()
        if self.connection_registry is not None:
            await asyncio.sleep(0)  # the closed connections' connection_lost
            await self.connection_registry.flush()
