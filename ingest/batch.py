"""Batching: accumulates decoded messages into rows ready for COPY, with the
acknowledgement tokens of the messages they came from. Pure: no I/O, no clock (the
caller passes times)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters import CLASSES, Decoded, DecodeError

_CLASSES = {c.name: c for c in CLASSES}

# (device_id, ts, point, seq, *metric values) in the class table's column order
ReadingRow = tuple[Any, ...]
# (device_id, class, ts, point, name, value)
StateRow = tuple[str, str, datetime, str, str, str]
# (received_at, topic, payload, reason, detail)
DeadRow = tuple[datetime, str, bytes, str, str]


@dataclass(slots=True)
class DeviceTouch:
    """What a batch learned about one device; merged into the registry on commit."""

    device_class: str
    first_seen: datetime
    last_seen: datetime
    last_ts: datetime | None = None
    meta: dict[str, Any] | None = None
    status: str | None = None
    status_at: datetime | None = None
    automated_at: datetime | None = None


@dataclass(slots=True)
class Batch:
    opened_at: float  # monotonic seconds, for the age limit
    rows: dict[str, list[ReadingRow]] = field(default_factory=dict)
    states: list[StateRow] = field(default_factory=list)
    dead: list[DeadRow] = field(default_factory=list)
    devices: dict[str, DeviceTouch] = field(default_factory=dict)
    tokens: list[Any] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)  # messages by class
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (class, reason)
    received_first: datetime | None = None
    # Devices whose automation this worker has committed, with its time: a report at
    # or after that time cannot change it, so the groups are not evaluated again.
    automated: Mapping[str, datetime] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return len(self.tokens)

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows.values()) + len(self.states)

    def add(self, d: Decoded, received_at: datetime, token: Any) -> None:
        """Add an accepted message."""
        self.tokens.append(token)
        if self.received_first is None:
            self.received_first = received_at
        cls = d.device_class
        self.accepted[cls] += 1
        if d.rows:
            dev, ts, seq = d.device_id, d.ts, d.seq
            rows = self.rows.get(cls)
            if rows is None:
                rows = self.rows[cls] = []
            for point, values in d.rows:
                rows.append((dev, ts, point, seq, *values))
        for point, name, value in d.states:
            self.states.append((d.device_id, cls, d.ts, point, name, value))
        touch = self.devices.get(d.device_id)
        if touch is None:
            touch = self.devices[d.device_id] = DeviceTouch(cls, received_at, received_at)
        else:
            touch.last_seen = received_at
        if d.status is not None:
            if touch.status_at is None or d.ts >= touch.status_at:
                touch.status, touch.status_at = d.status, d.ts
        else:
            if touch.last_ts is None or d.ts > touch.last_ts:
                touch.last_ts = d.ts
            if d.automatic and touch.automated_at is None:
                known = self.automated.get(d.device_id)
                if (known is None or d.ts < known) and _CLASSES[cls].automates(d.rows):
                    touch.automated_at = d.ts
        if d.meta:
            if touch.meta is None:
                touch.meta = dict(d.meta)
            else:
                touch.meta.update(d.meta)

    def add_dead(
        self, topic: str, payload: bytes, error: DecodeError, received_at: datetime, token: Any
    ) -> None:
        """Add a rejected message: it is stored as a dead letter and acknowledged."""
        self.tokens.append(token)
        if self.received_first is None:
            self.received_first = received_at
        parts = topic.split("/", 3)
        self.rejected[(parts[2] if len(parts) > 3 else "unknown", error.reason)] += 1
        self.dead.append((received_at, topic, payload, error.reason, error.detail))
