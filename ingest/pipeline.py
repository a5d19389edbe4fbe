"""The pipeline's driver: the I/O around the pure core (`ingest.core`).

Sources call `on_messages` (the `Intake` of `ingest.sources`) with the messages of each
read; the core decodes them into the open batch and closes batches by size, a timer
closes them by age, and writer tasks commit them. Only after a batch's commit are its
tokens handed back to the sources they came from, so a message a sender handed over
is either in the database or still held by the sender. When batches pile up
(database slow or down), the sources pause until the writers catch up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from adapters import ADAPTERS, CLASSES, DecodeError
from ingest.batch import Batch
from ingest.config import Config
from ingest.core import Core
from ingest.dispatch import Dispatcher
from ingest.metrics import ServiceMetrics
from ingest.registry import RegistryCache
from ingest.sources import Message, Source
from ingest.writer import CONFLICT, TRANSIENT, Writer, lost_connection

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[Any]]
CONFLICT_RETRIES = 5  # a deadlock or serialization failure is retried at once this often


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
        self.core = Core(self.dispatcher, self.registry, cfg.batch.max_rows, cfg.batch.max_pending)
        self.writer = Writer(CLASSES)
        self.sources: list[Source] = []  # paused and resumed together
        self._timer: asyncio.TimerHandle | None = None
        self._work = asyncio.Event()  # set when a closed batch waits for a writer
        self._writers = writers
        self._tasks: list[asyncio.Task[None]] = []
        self._progress = asyncio.Event()  # set after every commit
        self.failure: BaseException | None = None  # a writer died of a bug
        self.on_failure: Callable[[], None] | None = None

    @property
    def committed_messages(self) -> int:
        return self.core.committed_messages

    @property
    def pending_messages(self) -> int:
        """Messages received and not yet committed."""
        return self.core.pending_messages

    # ---- intake (the sources call these synchronously, on the event loop) ----

    def on_messages(self, source: Source, epoch: Hashable, messages: Sequence[Message]) -> None:
        """The messages of one read; they arrived together, so they share one reception time."""
        core = self.core
        had_open = core.open is not None
        closed = core.intake(source, epoch, messages, datetime.now(UTC), time.monotonic())
        self._after_intake(had_open, closed)

    def on_rejected(
        self,
        source: Source,
        epoch: Hashable,
        topic: str,
        payload: bytes,
        reason: str,
        detail: str,
        token: Any,
    ) -> None:
        core = self.core
        had_open = core.open is not None
        error = DecodeError(reason, detail)
        closed = core.reject(
            source, epoch, (topic, payload, token), error, datetime.now(UTC), time.monotonic()
        )
        self._after_intake(had_open, closed)

    def _after_intake(self, had_open: bool, closed: bool) -> None:
        core = self.core
        if closed:
            self._queued()
        if core.open is None:
            self._cancel_timer()
        elif not had_open or closed or self._timer is None:
            # A batch opened in this read: its age limit starts now.
            self._cancel_timer()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.cfg.batch.max_age_ms / 1000, self.flush)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self) -> None:
        """Close the open batch and queue it for the writers."""
        self._cancel_timer()
        if self.core.close() is not None:
            self._queued()

    def _queued(self) -> None:
        core = self.core
        self._work.set()
        self.metrics.pending_messages.set(core.queued_messages)
        self.metrics.queue_batches.set(len(core.ready))
        if core.should_pause():
            log.info("intake paused: %d batches wait for the database", len(core.ready))
            self.metrics.paused.set(1)
            for src in self.sources:
                src.pause()

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
            "%s failed: %r; the worker stops (unacknowledged messages stay with the senders)",
            task.get_name(),
            self.failure,
        )
        self._progress.set()
        if self.on_failure is not None:
            self.on_failure()

    async def stop(self, within: float | None = None) -> bool:
        """Commit what has been received (for at most `within` seconds), then stop the
        writers. Returns whether everything received was committed."""
        self.flush()
        done = False
        if self.failure is None:
            try:
                await asyncio.wait_for(self.drain(), within)
                done = self.failure is None
            except TimeoutError:
                log.warning(
                    "stopping with %d messages not committed: their senders keep them", self.pending_messages
                )
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        return done

    async def drain(self) -> None:
        """Wait until every received message is committed (and acknowledged)."""
        while True:
            self.flush()
            if self.core.idle or self.failure is not None:
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
        core = self.core
        try:
            while True:
                batch = core.take()
                if batch is None:
                    self._work.clear()
                    await self._work.wait()
                    continue
                self.metrics.queue_batches.set(len(core.ready))
                conflicts = 0
                while True:
                    try:
                        if conn is None or conn.is_closed():
                            conn = await self._connect()
                            await self.writer.prepare(conn)
                            self.metrics.db_connected.set(1)
                            backoff = 0.1
                        await self._commit(conn, batch)
                        break
                    except CONFLICT as exc:
                        # A deadlock or serialization failure is another writer's
                        # transaction in the way, not an outage: again, at once.
                        conflicts += 1
                        self.metrics.db_errors.labels("conflict").inc()
                        if conflicts <= CONFLICT_RETRIES:
                            log.info("writer %d: %s; retrying at once", n, exc.__class__.__name__)
                            continue
                        self._lost(n, exc, backoff)
                        conn.terminate()
                        conn = None
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.cfg.database.retry_max_s)
                    except Exception as exc:
                        if not lost_connection(exc, conn):
                            raise
                        self._lost(n, exc, backoff)
                        if conn is not None:
                            conn.terminate()
                            conn = None
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.cfg.database.retry_max_s)
                acks, resume = core.committed(batch)
                self.metrics.pending_messages.set(core.queued_messages)
                self._progress.set()
                for src, epoch, tokens in acks:
                    src.ack(epoch, tokens)
                if resume:
                    self.metrics.paused.set(0)
                    log.info("intake resumed")
                    for src in self.sources:
                        src.resume()
        finally:
            if conn is not None:
                conn.terminate()

    def _lost(self, n: int, exc: BaseException, backoff: float) -> None:
        self.metrics.db_errors.labels("transient").inc()
        self.metrics.db_connected.set(0)
        log.warning(
            "writer %d: database unavailable (%s: %s); retry in %.1fs",
            n,
            exc.__class__.__name__,
            exc,
            backoff,
        )

    async def _commit(self, conn: Any, batch: Batch) -> None:
        if batch.unverified:
            for dev, registered in await self.writer.mismatched(conn, batch):
                batch.reject_device(dev, registered)
            batch.unverified.clear()
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
        m.batch_messages.observe(batch.messages)
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
