"""Sources: where messages come from, and where their acknowledgements go back.

A source owns its connections (an MQTT session, a queue consumer, a WebSocket of a
charge point, a TCP connection of an RTU) and nothing else. It hands the pipeline's
intake the messages of each read as `(topic, payload, token)` together with an
*epoch*: the connection or session they arrived on. Tokens and epochs are opaque to
the pipeline; it hands them back through `Source.ack(epoch, tokens)` only after the
rows those messages carried are committed (or after they were stored as dead
letters). A source whose epoch has ended (the connection is gone) drops the
acknowledgement: the sender delivers again, and the idempotent writer stores it once.

Decoding is not a source's job: the topic names the adapter (`<prefix>/v1/<class>/
<device_id>/<channel>`), so a source of native frames (OCPP, SL651) gives each frame
the topic of its channel and the pipeline decodes it like an MQTT message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from typing import Any, Protocol

__all__ = ["Intake", "Message", "SocketReader", "Source"]

# (topic, payload, token)
Message = tuple[str, bytes, Any]


class Source(Protocol):
    """What the pipeline and the service need of a source."""

    name: str  # "mqtt", "amqp", "ocpp", "sl651": for logs and metric labels

    def ack(self, epoch: Hashable, tokens: list[Any]) -> None:
        """The messages of these tokens are committed: acknowledge them (PUBACK, queue
        ack, CallResult, SL651 reply). Called on the event loop; must not block."""

    def pause(self) -> None:
        """Stop reading: the pipeline holds as much as it may (the senders keep the rest)."""

    def resume(self) -> None: ...

    @property
    def connected(self) -> bool: ...

    async def run(self) -> None:
        """Serve until `close()`; raise only on a fault that should stop the worker."""

    async def stop_intake(self) -> None:
        """Take no new messages (unsubscribe, stop accepting connections): the first
        step of a clean stop, before the pipeline commits and acknowledges what it holds."""

    async def close(self) -> None:
        """After the last acknowledgement: end the sessions and connections."""


class Intake(Protocol):
    """What a source calls: the pipeline's intake, synchronous, on the event loop."""

    def on_messages(self, source: Source, epoch: Hashable, messages: Sequence[Message]) -> None:
        """The messages of one read; they arrived together and share a reception time."""

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
        """A message the source itself refused (a frame that fails its protocol's
        validation): stored as a dead letter, then acknowledged like the rest."""


class SocketReader:
    """The pause/resume and `connected` of a source that reads one broker connection:
    paused, it stops reading the socket, so TCP holds the broker's further messages
    (an AMQP broker sends at most `prefetch` unacknowledged ones anyway). A source
    that connects while paused starts its new connection paused (it checks
    `_paused`). Subclasses set `_paused`, `_connected` and `_reading()`."""

    _paused: bool
    _connected: asyncio.Event

    def _reading(self) -> asyncio.Transport | None:
        """The transport of the current connection, if any."""
        raise NotImplementedError

    def pause(self) -> None:
        self._paused = True
        transport = self._reading()
        if transport is not None:
            transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            transport = self._reading()
            if transport is not None:
                transport.resume_reading()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()
