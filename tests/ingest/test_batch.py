"""Batching: rows in the table's column order, registry touches, and when a device
counts as automated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from adapters import ADAPTERS, DecodeError
from ingest.batch import Batch
from ingest.dispatch import Dispatcher

NOW = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)
D = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))


def add(b: Batch, topic: str, doc: dict[str, object], at: datetime = NOW) -> None:
    b.add(D.decode(topic, orjson.dumps(doc), at), at, len(b.tokens))


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
    assert b.accepted["charger"] == 2 and b.tokens == [0, 1]


def test_dead_letters_are_counted_by_class_and_reason() -> None:
    b = Batch(0.0)
    b.add_dead("gz/v1/reservoir/r1/telemetry", b"{", DecodeError("bad_json", "x"), NOW, 7)
    b.add_dead("junk", b"", DecodeError("bad_topic", "y"), NOW, 8)
    assert b.rejected == {("reservoir", "bad_json"): 1, ("unknown", "bad_topic"): 1}
    assert [d[3] for d in b.dead] == ["bad_json", "bad_topic"] and b.tokens == [7, 8]


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
