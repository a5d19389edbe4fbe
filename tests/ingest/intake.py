"""A small intake for testing sources without the pipeline: it records what a source
hands over and acknowledges only when the test says the batch is committed."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.sources import Message, Source


@dataclass
class Held:
    source: Source
    epoch: Hashable
    topic: str
    payload: bytes
    token: Any
    reason: str | None = None  # set for a message the source refused
    detail: str = ""


@dataclass
class RecordingIntake:
    held: list[Held] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on_messages(self, source: Source, epoch: Hashable, messages: Sequence[Message]) -> None:
        self.held.extend(Held(source, epoch, t, p, k) for t, p, k in messages)
        self.arrived.set()

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
        self.held.append(Held(source, epoch, topic, payload, token, reason, detail))
        self.arrived.set()

    async def wait(self, n: int) -> list[Held]:
        """Until at least n messages (accepted or refused) are held."""
        while len(self.held) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return list(self.held)

    def commit(self) -> None:
        """As the pipeline does after a commit: hand every held token back."""
        held, self.held = self.held, []
        by_epoch: dict[tuple[int, Hashable], tuple[Source, list[Any]]] = {}
        for h in held:
            by_epoch.setdefault((id(h.source), h.epoch), (h.source, []))[1].append(h.token)
        for (_, epoch), (source, tokens) in by_epoch.items():
            source.ack(epoch, tokens)
