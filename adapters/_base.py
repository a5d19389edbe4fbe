"""The adapter contract: declarations of a device class and what decoding returns.

An adapter is pure: it turns (topic, payload, received_at) into a `Decoded` message
or raises `DecodeError`. No sockets, clock, database or environment inside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

# Reasons are a closed set: they label Prometheus series and dead letters.
REASONS: Final = (
    "bad_topic",  # topic does not match <prefix>/v1/<class>/<device>/<channel>
    "bad_device_id",  # device id outside the allowed characters or length (ingest.topics)
    "unknown_class",  # class not served by this service
    "unknown_channel",  # channel not served for that class
    "bad_json",  # payload is not JSON
    "schema",  # JSON does not match the class contract
    "unknown_metric",  # metric or state name not in the class vocabulary
    "out_of_range",  # value outside the metric's plausible range or enum
    "bad_timestamp",  # timestamp missing or unparseable
    "future_timestamp",  # more than the allowed skew ahead of reception
    "too_old",  # older than the configured horizon
    "bad_frame",  # native frame malformed (length, markers, BCD)
    "bad_checksum",  # native frame CRC mismatch
    "unsupported",  # well-formed native message that carries no readings
    "db_rejected",  # PostgreSQL refused the row (e.g. NUL in text)
    "class_mismatch",  # the device is registered under another class
    "internal_error",  # the adapter failed on this message (a bug): type and message kept
)


class DecodeError(Exception):
    """A message that cannot be accepted. `reason` is one of REASONS."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured quantity of a class: its column, unit and plausible range."""

    name: str  # snake_case with the unit at the end, e.g. "level_m"
    unit: str  # UCUM-like unit text for docs and schemas
    minimum: float
    maximum: float
    description: str
    register: bool = False  # a monotonic counter (energy) rather than a gauge
    pointed: bool = False  # may carry ".<point>" for one of several sensors
    since: int = 1  # the migration that added its column (ingest/schema_sql.py generates it)


@dataclass(frozen=True, slots=True)
class State:
    """An enumerated state reported as an event (e.g. a connector's OCPP status)."""

    name: str
    values: tuple[str, ...]
    description: str
    pointed: bool = False


@dataclass(frozen=True, slots=True)
class MetaField:
    """A registry hint a device may send in `meta` (region, flood-limit level, ...)."""

    name: str
    kind: type[str] | type[float] | type[int]
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str | int, ...] = ()


COMMON_META: Final = (
    MetaField("region", str, "GB/T 2260 code of the prefecture (or 'guian'), a hint"),
    MetaField("site", str, "site or station name"),
    MetaField("name", str, "device name"),
)


@dataclass(frozen=True, slots=True)
class DeviceClass:
    """A device class as data: its metrics (the columns of its readings table),
    states, meta hints and the interval at which a healthy device reports."""

    name: str
    title: str
    metrics: tuple[Metric, ...]
    states: tuple[State, ...] = ()
    meta: tuple[MetaField, ...] = ()
    expected_interval_s: int = 3600
    # A device counts as online when it reported within this many seconds (the
    # default of `rollup.online_<class>_s`); 0: twice `expected_interval_s`.
    online_s: int = 0
    # A report makes the device "automated" (plan counting) when it carries at least
    # one metric of each group; no groups: any automatic report does.
    automation: tuple[tuple[str, ...], ...] = ()
    metric_index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    # name -> (column index, minimum, maximum): the decoder's hot-path lookup
    metric_bounds: Mapping[str, tuple[int, float, float]] = field(init=False, repr=False, compare=False)
    state_index: Mapping[str, State] = field(init=False, repr=False, compare=False)
    meta_index: Mapping[str, MetaField] = field(init=False, repr=False, compare=False)
    # `automation` as column indexes
    automation_columns: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric_index", {m.name: i for i, m in enumerate(self.metrics)})
        bounds = {m.name: (i, m.minimum, m.maximum) for i, m in enumerate(self.metrics)}
        object.__setattr__(self, "metric_bounds", bounds)
        object.__setattr__(self, "state_index", {s.name: s for s in self.states})
        all_meta = COMMON_META + self.meta
        object.__setattr__(self, "meta_index", {f.name: f for f in all_meta})
        index = self.metric_index
        columns = tuple(tuple(index[name] for name in group) for group in self.automation)
        object.__setattr__(self, "automation_columns", columns)
        if self.online_s == 0:
            object.__setattr__(self, "online_s", 2 * self.expected_interval_s)

    def automates(self, rows: list[Row]) -> bool:
        """Whether rows of one automatic report satisfy `automation`."""
        for cols in self.automation_columns:
            if not any(values[i] is not None for _, values in rows for i in cols):
                return False
        return True

    @property
    def table(self) -> str:
        return f"readings_{self.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic `<prefix>/v1/<class>/<device_id>/<channel>`."""

    prefix: str
    device_class: str
    device_id: str
    channel: str


# A row of readings: (point, values in the class's metric order, None where absent).
Row = tuple[str, list[float | None]]
# A state event: (point, name, value).
StateEvent = tuple[str, str, str]


@dataclass(slots=True)
class Decoded:
    """What one accepted message carries. Usually one row (point ""); a message
    with several sensors of a kind gets one row per point."""

    device_class: str
    device_id: str
    ts: datetime
    rows: list[Row]
    states: list[StateEvent] = field(default_factory=list)
    meta: dict[str, str | float | int] | None = None
    seq: int | None = None
    status: str | None = None  # "online"/"offline" from the status channel
    automatic: bool = True  # False for manually entered reports (SL651 function 35)


Decoder = Callable[[Topic, bytes, datetime], Decoded]


@dataclass(frozen=True, slots=True)
class Adapter:
    """Binds a device class and a topic channel to a pure decoder."""

    device_class: DeviceClass
    channel: str
    schema_versions: tuple[int, ...]
    decode: Decoder
    description: str
