"""Batching: rows in the table's column order, registry touches, and when a device
counts as automated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from adapters import ADAPTERS, DecodeError
from ingest.batch import Batch
from ingest.dispatch import Dispatcher
from ingest.registry import RegistryCache

NOW = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)
D = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))


def add(b: Batch, topic: str, doc: dict[str, object], at: datetime = NOW) -> None:
    b.add(D.decode(topic, orjson.dumps(doc), at), at)


def test_rows_points_states_and_touches() -> None:
    b = Batch(0.0)
    t1, t2 = NOW - timedelta(minutes=2), NOW - timedelta(minutes=1)
    add(
        b,
        "gz/v1/charger/c1/telemetry",
        {
            "ts": t2.isoformat(),
            "seq": 2,
            "metrics": {"power_w.1": 7000, "energy_wh.1": 10.0},
            "states": {"status.1": "Charging"},
            "meta": {"region": "520100"},
        },
    )
    add(b, "gz/v1/charger/c1/telemetry", {"ts": t1.isoformat(), "metrics": {"voltage_v": 230}})
    assert b.rows["charger"] == [
        ("c1", t2, "1", 2, 10.0, 7000, None, None, None, None),
        ("c1", t1, "", None, None, None, None, 230, None, None),
    ]
    assert b.states == [("c1", "charger", t2, "1", "status", "Charging")]
    touch = b.devices["c1"]
    assert touch.last_ts == t2  # the newest reading, not the last received
    assert touch.meta == {"region": "520100"}
    assert b.accepted["charger"] == 2 and b.messages == 2


def test_dead_letters_are_counted_by_class_and_reason() -> None:
    b = Batch(0.0)
    b.add_dead("gz/v1/reservoir/r1/telemetry", b"{", DecodeError("bad_json", "x"), NOW)
    b.add_dead("junk", b"", DecodeError("bad_topic", "y"), NOW)
    assert b.rejected == {("reservoir", "bad_json"): 1, ("unknown", "bad_topic"): 1}
    assert [d[3] for d in b.dead] == ["bad_json", "bad_topic"] and b.messages == 2


def test_a_reservoir_is_automated_by_a_report_with_level_and_rain() -> None:
    b = Batch(0.0)
    ts = (NOW - timedelta(minutes=3)).isoformat()
    add(b, "gz/v1/reservoir/r1/telemetry", {"ts": ts, "metrics": {"battery_v": 12.5}})
    add(b, "gz/v1/reservoir/r1/telemetry", {"ts": ts, "metrics": {"level_m": 1050.0}})
    assert b.devices["r1"].automated_at is None
    later = NOW - timedelta(minutes=1)
    add(
        b,
        "gz/v1/reservoir/r1/telemetry",
        {"ts": later.isoformat(), "metrics": {"level_m": 1050.1, "rain_1h_mm": 0.0}},
    )
    assert b.devices["r1"].automated_at == later
    # classes without an automation rule: any automatic report
    add(b, "gz/v1/power_line/p1/telemetry", {"ts": ts, "metrics": {"battery_v": 12.5}})
    assert b.devices["p1"].automated_at is not None


def _automating(b: Batch, ts: datetime) -> None:
    doc = {"ts": ts.isoformat(), "metrics": {"level_m": 1050.0, "rain_1h_mm": 0.0}}
    add(b, "gz/v1/reservoir/r1/telemetry", doc)


def test_automation_the_registry_has_committed_is_not_evaluated_again() -> None:
    registry = RegistryCache(timedelta(minutes=5))
    first = Batch(0.0, automated=registry.automated)
    t0 = NOW - timedelta(minutes=3)
    _automating(first, t0)
    due = registry.due(first.devices)
    assert [d for d, _ in due] == ["r1"]
    registry.committed(due)
    assert registry.automated == {"r1": t0}
    # a later automated report is no news: the batch leaves it out, the registry has
    # nothing to write for it
    later = Batch(0.0, automated=registry.automated)
    _automating(later, NOW - timedelta(minutes=1))
    assert later.devices["r1"].automated_at is None
    # an earlier one (a backfill) is: it moves the device's automation back
    earlier = Batch(0.0, automated=registry.automated)
    t_early = NOW - timedelta(minutes=10)
    _automating(earlier, t_early)
    assert earlier.devices["r1"].automated_at == t_early
    due = registry.due(earlier.devices)
    assert due and due[0][1].automated_at == t_early
    registry.committed(due)
    assert registry.automated == {"r1": t_early}
    # a batch opened before that commit may carry a later time: not written for it,
    # and a write of it (with other news) leaves the earliest time
    stale = Batch(0.0)
    _automating(stale, t0)
    assert registry.due(stale.devices) == []
    registry.committed([("r1", stale.devices["r1"])])
    assert registry.automated == {"r1": t_early}
    registry.forget()
    assert registry.automated == {}
