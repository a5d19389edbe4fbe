"""A small known fleet of messages, for integration tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

BJT = timezone(timedelta(hours=8))


def _msg(cls: str, dev: str, doc: dict[str, object], channel: str = "telemetry") -> tuple[str, bytes]:
    return f"gz/v1/{cls}/{dev}/{channel}", orjson.dumps(doc)


def known_fleet(now: datetime, rounds: int = 3) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
    """Good messages of every class from several devices, `rounds` timestamps each.
    Returns the messages and the rows expected per table."""
    msgs: list[tuple[str, bytes]] = []
    base = now.replace(microsecond=0) - timedelta(minutes=30)
    for r in range(rounds):
        t = base + timedelta(minutes=5 * r)
        for i in range(3):
            msgs.append(
                _msg(
                    "reservoir",
                    f"res-{i}",
                    {
                        "ts": t.astimezone(BJT).isoformat(),
                        "seq": r,
                        "metrics": {
                            "rain_5min_mm": 0.5 * r,
                            "level_m": 1050.0 + i + r * 0.01,
                            "seepage_pressure_m.P1": 12.0 + r,
                            "seepage_pressure_m.P2": 11.5,
                            "battery_v": 12.4,
                        },
                        "meta": {"region": "520500", "flood_limit_level_m": 1052.0},
                    },
                )
            )
        for i in range(2):
            msgs.append(
                _msg(
                    "power_line",
                    f"pl-{i}",
                    {
                        "ts": int(t.timestamp() * 1000),
                        "metrics": {
                            "conductor_temp_c": 35.5,
                            "ice_thickness_mm": 2.0 * r,
                            "air_temp_c": -2.0,
                            "humidity_pct": 91.0,
                            "wind_speed_ms": 4.2,
                        },
                        "meta": {"region": "520200", "design_ice_mm": 20.0},
                    },
                )
            )
        msgs.append(
            _msg(
                "charger",
                "ch-0",
                {
                    "ts": t.isoformat(),
                    "metrics": {
                        "energy_wh.1": 1000.0 * (r + 1),
                        "power_w.1": 7000.0,
                        "voltage_v.1": 230.0,
                        "energy_wh.2": 500.0,
                    },
                    "states": {"status.1": "Charging", "status.2": "Available"},
                    "meta": {"region": "520100", "rated_power_kw": 7.0},
                },
            )
        )
        msgs.append(
            _msg(
                "datacenter",
                "dc-0",
                {
                    "ts": t.isoformat(),
                    "metrics": {
                        "facility_energy_kwh": 120000.0 + 1200 * r,
                        "it_energy_kwh": 100000.0 + 1000 * r,
                        "racks_built": 5000,
                        "racks_in_service": 3300,
                    },
                    "meta": {"region": "guian", "pue_category": 1},
                },
            )
        )
    expected = {
        "readings_reservoir": rounds * 3 * 3,  # device row + P1 + P2
        "readings_power_line": rounds * 2,
        "readings_charger": rounds * 2,  # connector 1 and 2
        "readings_datacenter": rounds,
        "state_events": rounds * 2,
    }
    return msgs, expected


def bad_messages(now: datetime) -> list[tuple[str, bytes, str]]:
    """Messages that must be dead-lettered, with their reason."""
    ts = now.isoformat()
    return [
        ("gz/v1/reservoir/res-9/telemetry", b"{not json", "bad_json"),
        (
            "gz/v1/reservoir/res-9/telemetry",
            orjson.dumps({"ts": ts, "metrics": {"level_mm": 1.0}}),
            "unknown_metric",
        ),
        (
            "gz/v1/charger/ch-9/telemetry",
            orjson.dumps({"ts": ts, "metrics": {"soc_pct": 140.0}}),
            "out_of_range",
        ),
        (
            "gz/v1/datacenter/dc-9/telemetry",
            orjson.dumps({"ts": (now + timedelta(hours=1)).isoformat(), "metrics": {"it_power_kw": 1.0}}),
            "future_timestamp",
        ),
        ("gz/v1/toaster/t-1/telemetry", orjson.dumps({"ts": ts, "metrics": {"x": 1}}), "unknown_class"),
        (
            "gz/v1/reservoir/res-9/telemetry",
            orjson.dumps({"ts": "2024-06-15 08:00", "metrics": {"level_m": 1.0}}),
            "bad_timestamp",
        ),
    ]
