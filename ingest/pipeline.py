"""The pipeline: messages in, batches committed, acknowledgements out.

The MQTT source calls `on_messages` with the messages of each socket read; the
pipeline decodes them into the open batch, flushes batches by size or age to a queue,
and writer tasks commit them. Only after a batch's commit are its tokens handed back
to the source to acknowledge, so a message the broker accepted is either in the
database or still held by the broker. When batches pile up (database slow or down),
intake pauses until the writers catch up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from adapters import ADAPTERS, CLASSES, DecodeError
from ingest.batch import Batch
from ingest.config import Config
from ingest.dispatch import Dispatcher
from ingest.metrics import ServiceMetrics
from ingest.registry import RegistryCache
from ingest.sources.mqtt_wire import Message
from ingest.writer import TRANSIENT, Writer

log = logging.getLogger(__name__)
UTC = UTC


class Source(Protocol):
    """What the pipeline needs of an MQTT source."""

    def ack(self, tokens: list[Any]) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


Connect = Callable[[], Awaitable[Any]]


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        connect: Connect,
        metrics: ServiceMetrics,
        writers: int = 2,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self._connect = connect
        self.dispatcher = Dispatcher(
            ADAPTERS,
            cfg.mqtt.prefix,
            timedelta(seconds=cfg.accept.future_skew_s),
            timedelta(days=cfg.accept.horizon_days),
        )
        self.registry = RegistryCache(timedelta(seconds=cfg.accept.registry_resolution_s))
        self.writer = Writer(CLASSES)
        self.source: Source | None = None
        self._batch: Batch | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queue: asyncio.Queue[Batch] = asyncio.Queue()
        self._in_flight = 0  # batches taken by a writer, not yet committed
        self._paused = False
        self._writers = writers
        self._tasks: list[asyncio.Task[None]] = []
        self.committed_messages = 0
        self._queued_messages = 0  # in queued and in-flight batches
        self._progress = asyncio.Event()  # set after every commit
        self.failure: BaseException | None = None  # a writer died of a bug
        self.on_failure: Callable[[], None] | None = None

    # ---- intake (called by the source, synchronously, on the event loop) ----

    def on_messages(self, messages: list[Message], generation: int) -> None:
        """The messages of one read from the broker, as (topic, payload, packet id); a
        message's acknowledgement token is (generation, packet id). They arrived
        together, so they share one reception time."""
        received_at = datetime.now(UTC)
        decode = self.dispatcher.decode
        max_rows = self.cfg.batch.max_rows
        batch = self._batch
        for topic, payload, pid in messages:
            if batch is None:
                batch = self._open()
            try:
                decoded = decode(topic, payload, received_at)
            except DecodeError as exc:
                batch.add_dead(topic, payload, exc, received_at, (generation, pid))
            else:
                batch.add(decoded, received_at, (generation, pid))
            if len(batch.tokens) >= max_rows:
                self.flush()
                batch = None

    def _open(self) -> Batch:
        self._batch = Batch(time.monotonic(), automated=self.registry.automated)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.cfg.batch.max_age_ms / 1000, self.flush)
        return self._batch

    def flush(self) -> None:
        """Close the open batch and queue it for the writers."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, None
        if batch is None or not batch.tokens:
            return
        self._queue.put_nowait(batch)
        self._queued_messages += len(batch.tokens)
        self.metrics.pending_messages.set(self._queued_messages)
        waiting = self._queue.qsize()
        self.metrics.queue_batches.set(waiting)
        if waiting >= self.cfg.batch.max_pending and not self._paused and self.source:
            log.info("intake paused: %d batches wait for the database", waiting)
            self._paused = True
            self.metrics.paused.set(1)
            self.source.pause()

    @property
    def pending_messages(self) -> int:
        """Messages received and not yet committed."""
        return self._queued_messages + (len(self._batch.tokens) if self._batch else 0)

    # ---- writers ----

    def start(self) -> None:
        for i in range(self._writers):
            task = asyncio.create_task(self._write_loop(i), name=f"writer-{i}")
            task.add_done_callback(self._writer_done)
            self._tasks.append(task)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        """A writer only ends by cancellation; anything else is a bug that would stall
        the pipeline silently (nothing committed, nothing acknowledged): fail loudly."""
        if task.cancelled() or task.exception() is None:
            return
        self.failure = task.exception()
        log.critical(
            "%s failed: %r; the worker stops (unacknowledged messages stay with the broker)",
            task.get_name(),
            self.failure,
        )
        self._progress.set()
        if self.on_failure is not None:
            self.on_failure()

    async def stop(self) -> None:
        """Commit what has been received, then stop the writers."""
        self.flush()
        if self.failure is None:
            await self.drain()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def drain(self) -> None:
        """Wait until every received message is committed (and acknowledged)."""
        while True:
            self.flush()
            if (self._queue.empty() and not self._in_flight) or self.failure is not None:
                return
            self._progress = progress = asyncio.Event()
            await progress.wait()

    async def wait_committed(self, n: int) -> None:
        """Wait until at least `n` messages have been committed since start."""
        while self.committed_messages < n:
            self._progress = progress = asyncio.Event()
            await progress.wait()

    async def _write_loop(self, n: int) -> None:
        conn: Any = None
        backoff = 0.1
        try:
            while True:
                batch = await self._queue.get()
                self._in_flight += 1
                self.metrics.queue_batches.set(self._queue.qsize())
                while True:
                    try:
                        if conn is None or conn.is_closed():
                            conn = await self._connect()
                            await self.writer.prepare(conn)
                            self.metrics.db_connected.set(1)
                            backoff = 0.1
                        await self._commit(conn, batch)
                        break
                    except TRANSIENT as exc:
                        self.metrics.db_errors.labels("transient").inc()
                        self.metrics.db_connected.set(0)
                        log.warning(
                            "writer %d: database unavailable (%s); retry in %.1fs",
                            n,
                            exc.__class__.__name__,
                            backoff,
                        )
                        if conn is not None:
                            conn.terminate()
                            conn = None
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.cfg.database.retry_max_s)
                self._in_flight -= 1
                self._queued_messages -= len(batch.tokens)
                self.metrics.pending_messages.set(self._queued_messages)
                self._progress.set()
                if self.source is not None:
                    self.source.ack(batch.tokens)
                if self._paused and self._queue.qsize() < self.cfg.batch.max_pending:
                    self._paused = False
                    self.metrics.paused.set(0)
                    log.info("intake resumed")
                    if self.source is not None:
                        self.source.resume()
        finally:
            if conn is not None:
                conn.terminate()

    async def _commit(self, conn: Any, batch: Batch) -> None:
        devices = self.registry.due(batch.devices)
        started = time.perf_counter()
        try:
            result = await self.writer.write(conn, batch, devices)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, TRANSIENT):
                raise
            self.metrics.db_errors.labels("refused").inc()
            log.error("database refused a batch (%s: %s); salvaging row by row", exc.__class__.__name__, exc)
            result = await self.writer.salvage(conn, batch, devices, datetime.now(UTC))
            if result.rejected_rows:
                self.metrics.dead_letters.labels("db_rejected").inc(result.rejected_rows)
        elapsed = time.perf_counter() - started
        self.registry.committed(devices)
        m = self.metrics
        m.commit_seconds.observe(elapsed)
        m.batch_messages.observe(len(batch.tokens))
        now = datetime.now(UTC)
        m.last_commit.set(now.timestamp())
        if batch.received_first is not None:
            m.lag_seconds.observe((now - batch.received_first).total_seconds())
        if result.deduplicated:
            m.dedup_batches.inc()
        m.count(batch.accepted, batch.rejected)
        for cls, rows in batch.rows.items():
            m.rows.labels(f"readings_{cls}").inc(len(rows))
        if batch.states:
            m.rows.labels("state_events").inc(len(batch.states))
        if batch.dead:
            m.rows.labels("dead_letters").inc(len(batch.dead))
        self.committed_messages += len(batch.tokens)
