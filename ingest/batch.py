"""Batching: accumulates decoded messages into rows ready for COPY, with the
acknowledgement tokens of the messages they came from, by source and epoch. Pure: no
I/O, no clock (the caller passes times)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
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
# (topic, payload, received_at) of a message kept until its device's class is checked
Kept = tuple[str, bytes, datetime]


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
    # (source, epoch) -> the tokens to hand back to that source after the commit
    acks: dict[tuple[Any, Hashable], list[Any]] = field(default_factory=dict)
    messages: int = 0
    accepted: Counter[str] = field(default_factory=Counter)  # messages by class
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (class, reason)
    received_first: datetime | None = None
    # Devices whose automation this worker has committed, with its time: a report at
    # or after that time cannot change it, so the groups are not evaluated again.
    automated: Mapping[str, datetime] = field(default_factory=dict)
    # The class each device is registered under, as far as this worker knows. A device
    # it does not know is checked against the database before the commit; until then
    # its messages are kept, to become dead letters if the class is another.
    classes: Mapping[str, str] = field(default_factory=dict)
    unverified: dict[str, list[Kept]] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows.values()) + len(self.states)

    def tokens(self, source: Any, epoch: Hashable) -> list[Any]:
        """The list to append the tokens of `source`'s messages of `epoch` to."""
        key = (source, epoch)
        toks = self.acks.get(key)
        if toks is None:
            toks = self.acks[key] = []
        return toks

    def add(self, d: Decoded, received_at: datetime, topic: str = "", payload: bytes = b"") -> None:
        """Add an accepted message; raises DecodeError (class_mismatch), changing
        nothing, when its device is known under another class."""
        cls = d.device_class
        touch = self.devices.get(d.device_id)
        if touch is None:
            known = self.classes.get(d.device_id)
            if known is None:
                self.unverified.setdefault(d.device_id, []).append((topic, payload, received_at))
            elif known != cls:
                raise _mismatch(d.device_id, cls, known)
        elif touch.device_class != cls:
            raise _mismatch(d.device_id, cls, touch.device_class)
        elif d.device_id in self.unverified:
            self.unverified[d.device_id].append((topic, payload, received_at))
        self.messages += 1
        if self.received_first is None:
            self.received_first = received_at
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
                automated = self.automated.get(d.device_id)
                if (automated is None or d.ts < automated) and _CLASSES[cls].automates(d.rows):
                    touch.automated_at = d.ts
        if d.meta:
            if touch.meta is None:
                touch.meta = dict(d.meta)
            else:
                touch.meta.update(d.meta)

    def add_dead(self, topic: str, payload: bytes, error: DecodeError, received_at: datetime) -> None:
        """Add a rejected message: it is stored as a dead letter and acknowledged."""
        self.messages += 1
        if self.received_first is None:
            self.received_first = received_at
        self._dead(topic, payload, error, received_at)

    def _dead(self, topic: str, payload: bytes, error: DecodeError, received_at: datetime) -> None:
        parts = topic.split("/", 3)
        self.rejected[(parts[2] if len(parts) > 3 else "unknown", error.reason)] += 1
        self.dead.append((received_at, topic, payload, error.reason, error.detail))

    def reject_device(self, device_id: str, registered: str) -> None:
        """The database has `device_id` under class `registered`, not the one its
        messages in this batch claim: take its rows, states and registry touch out and
        store its messages as dead letters (class_mismatch)."""
        touch = self.devices.pop(device_id)
        cls = touch.device_class
        rows = self.rows.get(cls, [])
        self.rows[cls] = [r for r in rows if r[0] != device_id]
        self.states = [s for s in self.states if s[0] != device_id]
        kept = self.unverified.pop(device_id, [])
        self.accepted[cls] -= len(kept)
        error = _mismatch(device_id, cls, registered)
        for topic, payload, received_at in kept:
            self._dead(topic, payload, error, received_at)


def _mismatch(device_id: str, cls: str, registered: str) -> DecodeError:
    return DecodeError(
        "class_mismatch", f"device {device_id!r} is registered as {registered}; this message is {cls}"
    )
