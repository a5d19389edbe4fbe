"""An in-memory source: messages fed by the caller, acknowledgements recorded.

For tests of the pipeline without a broker, and for tools that hand the pipeline
messages they already hold (a replay). It follows the source interface exactly: an
epoch per `feed` caller's choosing, and acknowledgements that arrive only after the
pipeline committed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from ingest.sources import Intake, Message


class MemorySource:
    name = "memory"

    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self.acked: list[tuple[Hashable, Any]] = []  # (epoch, token), in the order acknowledged
        self.paused = False
        self.pauses = 0
        self.closed = False

    def feed(self, messages: Sequence[Message], epoch: Hashable = 0) -> None:
        self._intake.on_messages(self, epoch, messages)

    def refuse(
        self, topic: str, payload: bytes, reason: str, detail: str, token: Any, epoch: Hashable = 0
    ) -> None:
        self._intake.on_rejected(self, epoch, topic, payload, reason, detail, token)

    def ack(self, epoch: Hashable, tokens: list[Any]) -> None:
        self.acked.extend((epoch, t) for t in tokens)

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False

    @property
    def connected(self) -> bool:
        return not self.closed

    async def run(self) -> None:
        return None

    async def stop_intake(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True
