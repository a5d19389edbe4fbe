"""The fleet simulation: reports, births, outages and deliberate faults of every
device, in simulated-time order. Pure: the same fleet, config and weather give the
same messages in the same order; nothing here reads a clock or does I/O.

Time is simulated epoch seconds (float). Each device has its own random streams
(physics, faults, churn), so a shard of the fleet (`shard`/`shards`, used by
`--processes`) produces exactly the messages the whole fleet would for its devices.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final

import orjson

from ingest.simulate.devices import MODELS, Model
from ingest.simulate.fleet import Device
from ingest.simulate.rng import Rng, derive_seed
from ingest.simulate.weather import DAY, HOUR, RainEvent, Weather

BAD_KINDS: Final = ("bad_json", "unknown_metric", "out_of_range", "future_timestamp")
# Metrics a newer firmware might add: valid-looking, but not in the class vocabulary.
_UNKNOWN_METRIC: Final = {
    "reservoir": "water_temp_c",
    "power_line": "galloping_amplitude_m",
    "charger": "frequency_hz.1",
    "datacenter": "water_usage_l",
}
# Typical sensor faults: an unset 16/32-bit register, a sign error.
_OUT_OF_RANGE: Final = {
    "reservoir": ("level_m", 65535.0),
    "power_line": ("ice_thickness_mm", 655.35),
    "charger": ("power_w.1", 4294967295.0),
    "datacenter": ("it_power_kw", -12.5),
}
# Chargers and meters send epoch milliseconds; DTUs send RFC 3339 in local time.
_EPOCH_MS_CLASSES: Final = frozenset(("charger", "datacenter"))
CST: Final = timezone(timedelta(hours=8))


@dataclass(frozen=True, slots=True)
class SimConfig:
    start: float  # simulated epoch seconds of the first event
    seed: int = 1
    prefix: str = "gz"
    bad_share: float = 0.0  # share of reports followed by a deliberately bad copy
    churn_per_day: float = 0.0  # outages per device per simulated day
    outage_mean_s: float = 2 * HOUR
    silent_share: float = 0.5  # outages that send no `offline` (silence only)
    future_offset_s: float = DAY  # how far ahead a future_timestamp message claims to be
    shard: int = 0
    shards: int = 1
    storms: tuple[tuple[str, RainEvent], ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.bad_share <= 1.0:
            raise ValueError("bad_share must be within 0..1")
        if self.churn_per_day < 0.0 or self.outage_mean_s <= 0.0:
            raise ValueError("churn must be non-negative and outages must last")
        if not 0 <= self.shard < self.shards:
            raise ValueError("shard must be within 0..shards-1")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    ts: float  # simulated time the message is sent at (epoch seconds)
    device_class: str
    device_id: str
    channel: str  # "telemetry" or "status"
    retain: bool = False
    bad: str | None = None  # one of BAD_KINDS for a deliberately bad message

    def to_record(self) -> dict[str, object]:
        """The JSON-lines form of --output (payload as text; bad_json stays UTF-8)."""
        rec: dict[str, object] = {"topic": self.topic, "payload": self.payload.decode(),
                                  "ts": self.ts}
        if self.retain:
            rec["retain"] = True
        if self.bad:
            rec["bad"] = self.bad
        return rec


def format_ts(device_class: str, t: float) -> str | int:
    if device_class in _EPOCH_MS_CLASSES:
        return round(t * 1000)
    return datetime.fromtimestamp(t, CST).isoformat()


class _Unit:
    """A device at run time: its model, streams and connection state."""

    __slots__ = ("bad_rng", "churn_rng", "device", "model", "needs_full", "online", "seq",
                 "topic_status", "topic_telemetry")

    def __init__(self, device: Device, model: Model, seed: int, prefix: str) -> None:
        self.device = device
        self.model = model
        self.bad_rng = Rng(derive_seed(seed, "bad", device.device_id))
        self.churn_rng = Rng(derive_seed(seed, "churn", device.device_id))
        base = f"{prefix}/v1/{device.device_class}/{device.device_id}"
        self.topic_telemetry = f"{base}/telemetry"
        self.topic_status = f"{base}/status"
        self.online = False
        self.needs_full = True
        self.seq = 0


_STATUS, _REPORT = 0, 1


class Simulation:
    def __init__(self, fleet: Sequence[Device], config: SimConfig, weather: Weather | None = None) -> None:
        self.config = config
        self.weather = weather or Weather(config.seed, config.start, config.storms)
        self.now = config.start
        self._units: dict[int, _Unit] = {}
        self._heap: list[tuple[float, int, int]] = []
        for dev in fleet:
            if dev.index % config.shards != config.shard:
                continue
            rng = Rng(derive_seed(config.seed, "physics", dev.device_id))
            model = MODELS[dev.device_class](dev, rng, self.weather, config.start)
            self._units[dev.index] = _Unit(dev, model, config.seed, config.prefix)
            self._heap.append((config.start, dev.index, _STATUS))  # birth
            self._heap.append((model.first(), dev.index, _REPORT))
        heapq.heapify(self._heap)

    @property
    def devices(self) -> int:
        return len(self._units)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run(self, until: float = math.inf) -> Iterator[Message]:
        """Messages with simulated time before `until`; call again to continue."""
        heap = self._heap
        units = self._units
        bad_share = self.config.bad_share
        replace = heapq.heapreplace
        while heap and heap[0][0] < until:
            t, idx, kind = heap[0]
            self.now = t
            unit = units[idx]
            if kind == _REPORT:
                metrics, states, nxt = unit.model.fire(t, unit.needs_full)
                replace(heap, (nxt, idx, _REPORT))
                if unit.online and (metrics or states):
                    doc = self._document(unit, t, metrics, states)
                    yield Message(unit.topic_telemetry, orjson.dumps(doc), t,
                                  unit.device.device_class, unit.device.device_id, "telemetry")
                    if bad_share and unit.bad_rng.random() < bad_share:
                        yield self._spoil(unit, t, doc)
            else:
                yield from self._status(unit, t)

    def _status(self, unit: _Unit, t: float) -> Iterator[Message]:
        cfg, rng, dev = self.config, unit.churn_rng, unit.device
        if unit.online:  # an outage begins
            unit.online = False
            back = t + math.ceil(rng.expovariate(1.0 / cfg.outage_mean_s))
            heapq.heapreplace(self._heap, (back, dev.index, _STATUS))
            if not rng.chance(cfg.silent_share):
                yield self._status_message(unit, t, "offline")
            return
        unit.online = True
        unit.needs_full = True
        if cfg.churn_per_day > 0.0:
            drop = t + math.ceil(rng.expovariate(cfg.churn_per_day / DAY))
            heapq.heapreplace(self._heap, (drop, dev.index, _STATUS))
        else:
            heapq.heappop(self._heap)
        yield self._status_message(unit, t, "online")

    def _status_message(self, unit: _Unit, t: float, status: str) -> Message:
        dev = unit.device
        payload = orjson.dumps({"status": status, "ts": round(t * 1000)})
        return Message(unit.topic_status, payload, t, dev.device_class, dev.device_id, "status",
                       retain=True)

    def _document(self, unit: _Unit, t: float, metrics: dict[str, float],
                  states: dict[str, str] | None) -> dict[str, object]:
        dev = unit.device
        unit.seq += 1
        doc: dict[str, object] = {"ts": format_ts(dev.device_class, t), "seq": unit.seq,
                                  "metrics": metrics}
        if states:
            doc["states"] = states
        if unit.needs_full:
            doc["meta"] = dev.meta()
            unit.needs_full = False
        return doc

    def _spoil(self, unit: _Unit, t: float, doc: dict[str, object]) -> Message:
        """A deliberately bad copy of a report, tagged with its kind."""
        dev = unit.device
        cls = dev.device_class
        kind = BAD_KINDS[unit.bad_rng.randint(0, len(BAD_KINDS) - 1)]
        raw = doc["metrics"]
        assert isinstance(raw, dict)
        metrics = dict(raw)
        bad = dict(doc, metrics=metrics)
        if kind == "bad_json":
            text = orjson.dumps(doc).decode()
            payload = text[: len(text) // 2].encode()  # truncated on a character boundary
        else:
            if kind == "unknown_metric":
                metrics[_UNKNOWN_METRIC[cls]] = 1.0
            elif kind == "out_of_range":
                key, value = _OUT_OF_RANGE[cls]
                metrics[key] = value
            else:
                bad["ts"] = format_ts(cls, t + round(self.config.future_offset_s))
            payload = orjson.dumps(bad)
        return Message(unit.topic_telemetry, payload, t, cls, dev.device_id, "telemetry", bad=kind)


def nominal_rate(fleet: Sequence[Device]) -> float:
    """Rough telemetry messages per simulated second of the fleet (to size a run)."""
    per_class = {"reservoir": 1.3 / HOUR, "power_line": 1 / 1800, "datacenter": 1 / 900}
    rate = 0.0
    for dev in fleet:
        if dev.device_class == "charger":
            dc = dev.attributes["current_type"] == "DC"
            sessions = (5.5 if dc else 1.6) * int(dev.attributes["connectors"])
            rate += 1 / 900 + 4 * sessions / DAY
        else:
            rate += per_class[dev.device_class]
    return rate
