"""The pipeline's pure core: decisions without I/O.

It turns the messages a source hands over into batches (decoded rows, dead letters,
registry touches and the acknowledgement tokens of every message, by source and
epoch), closes a batch when it is full or when the driver says it is old, queues
closed batches for the writers, tells which tokens to hand back after a commit, and
when intake must pause (too many batches wait for the database) or may resume. No
sockets, no clock (times are passed in), no event loop: `ingest.pipeline` drives it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from datetime import datetime
from typing import Any

from adapters import DecodeError
from ingest.batch import Batch
from ingest.dispatch import Dispatcher
from ingest.registry import RegistryCache

# (source, epoch, tokens): what to hand back to one source after a commit
Acks = list[tuple[Any, Hashable, list[Any]]]


class Core:
    def __init__(
        self, dispatcher: Dispatcher, registry: RegistryCache, max_rows: int, max_pending: int
    ) -> None:
        self.dispatcher = dispatcher
        self.registry = registry
        self.max_rows = max_rows
        self.max_pending = max_pending
        self.open: Batch | None = None
        self.ready: deque[Batch] = deque()  # closed, waiting for a writer
        self.in_flight = 0  # taken by a writer, not yet committed
        self.queued_messages = 0  # in ready and in-flight batches
        self.paused = False
        self.committed_messages = 0

    # ---- intake ----

    def intake(
        self,
        source: Any,
        epoch: Hashable,
        messages: Sequence[tuple[str, bytes, Any]],
        received_at: datetime,
        now: float,
    ) -> bool:
        """Add the messages of one read; returns whether a batch was closed."""
        decode = self.dispatcher.decode
        max_rows = self.max_rows
        closed = False
        batch = self.open
        toks = batch.tokens(source, epoch) if batch is not None else []
        for topic, payload, token in messages:
            if batch is None:
                batch = self._new(now)
                toks = batch.tokens(source, epoch)
            try:
                batch.add(decode(topic, payload, received_at), received_at, topic, payload)
            except DecodeError as exc:
                batch.add_dead(topic, payload, exc, received_at)
            except Exception as exc:  # an adapter's bug must not become a redelivery loop
                error = DecodeError("internal_error", f"{type(exc).__name__}: {exc}")
                batch.add_dead(topic, payload, error, received_at)
            toks.append(token)
            if batch.messages >= max_rows:
                self.close()
                closed = True
                batch = None
        return closed

    def reject(
        self,
        source: Any,
        epoch: Hashable,
        message: tuple[str, bytes, Any],
        error: DecodeError,
        received_at: datetime,
        now: float,
    ) -> bool:
        """A message the source refused itself: a dead letter, acknowledged after
        commit. Returns whether a batch was closed."""
        topic, payload, token = message
        batch = self.open if self.open is not None else self._new(now)
        batch.add_dead(topic, payload, error, received_at)
        batch.tokens(source, epoch).append(token)
        if batch.messages >= self.max_rows:
            self.close()
            return True
        return False

    def _new(self, now: float) -> Batch:
        reg = self.registry
        self.open = Batch(now, automated=reg.automated, classes=reg.classes)
        return self.open

    def close(self) -> Batch | None:
        """Close the open batch and queue it; returns it (None if there was none)."""
        batch, self.open = self.open, None
        if batch is None or not batch.messages:
            return None
        self.ready.append(batch)
        self.queued_messages += batch.messages
        return batch

    # ---- backpressure ----

    def should_pause(self) -> bool:
        """True once, when intake must pause: `max_pending` batches wait for a writer."""
        if not self.paused and len(self.ready) >= self.max_pending:
            self.paused = True
            return True
        return False

    # ---- writers ----

    def take(self) -> Batch | None:
        if not self.ready:
            return None
        self.in_flight += 1
        return self.ready.popleft()

    def committed(self, batch: Batch) -> tuple[Acks, bool]:
        """A writer committed `batch`: the tokens to hand back, and whether intake may
        resume."""
        self.in_flight -= 1
        self.queued_messages -= batch.messages
        self.committed_messages += batch.messages
        resume = self.paused and len(self.ready) < self.max_pending
        if resume:
            self.paused = False
        return [(src, epoch, toks) for (src, epoch), toks in batch.acks.items() if toks], resume

    @property
    def idle(self) -> bool:
        """Nothing closed waits or is being written."""
        return not self.ready and not self.in_flight

    @property
    def pending_messages(self) -> int:
        """Messages received and not yet committed."""
        return self.queued_messages + (self.open.messages if self.open else 0)
