"""A small simulated fleet for the operators' tests: every class, every metric the
dashboards draw, three hours of history at 10-minute steps, in several regions, with
one reservoir rising above its flood-limit level, a line icing past half its design
ice, a hot conductor and a faulted charger."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson

STEP = timedelta(minutes=10)
ROUNDS = 19  # three hours and the present


def _msg(cls: str, dev: str, doc: dict[str, object]) -> tuple[str, bytes]:
    return f"gz/v1/{cls}/{dev}/telemetry", orjson.dumps(doc)


def ops_fleet(now: datetime) -> list[tuple[str, bytes]]:
    msgs: list[tuple[str, bytes]] = []
    start = now.replace(second=0, microsecond=0) - STEP * (ROUNDS - 1)
    for r in range(ROUNDS):
        ts = (start + STEP * r).isoformat()
        for dev, region, base, flood in (
            ("res-a", "520500", 1051.5, 1052.0),
            ("res-b", "520100", 795.0, 800.0),
        ):
            msgs.append(
                _msg(
                    "reservoir",
                    dev,
                    {
                        "ts": ts,
                        "seq": r,
                        "metrics": {
                            "rain_5min_mm": 1.5,
                            "rain_1h_mm": 9.0 + r,
                            "rain_cum_mm": 100.0 + 1.5 * r,
                            "level_m": base + 0.05 * r,
                            "seepage_pressure_m.P1": 12.0 + 0.1 * r,
                            "seepage_pressure_m.P2": 11.5,
                            "seepage_flow_lps": 0.8,
                            "displacement_mm.D1": 0.2 * r,
                            "battery_v": 12.4,
                        },
                        "meta": {"region": region, "flood_limit_level_m": flood, "name": f"{dev} reservoir"},
                    },
                )
            )
        for dev, region, design, ice, temp in (
            ("pl-a", "520200", 20.0, 0.7, 45.0),
            ("pl-b", "520500", 10.0, 0.0, 72.0),
        ):
            msgs.append(
                _msg(
                    "power_line",
                    dev,
                    {
                        "ts": ts,
                        "metrics": {
                            "conductor_temp_c": temp,
                            "ice_thickness_mm": ice * r,
                            "air_temp_c": -2.0,
                            "humidity_pct": 92.0,
                            "wind_speed_ms": 5.5,
                            "tension_n": 20000.0 + 100 * r,
                        },
                        "meta": {
                            "region": region,
                            "design_ice_mm": design,
                            "line": "500kV Qianbei",
                            "tower": dev,
                        },
                    },
                )
            )
        for dev, region, status in (("ch-a", "520100", "Charging"), ("ch-b", "520300", "Faulted")):
            msgs.append(
                _msg(
                    "charger",
                    dev,
                    {
                        "ts": ts,
                        "metrics": {
                            "energy_wh.1": 10000.0 + 1100.0 * r,
                            "power_w.1": 6600.0,
                            "voltage_v.1": 229.0,
                            "energy_wh.2": 5000.0,
                            "power_w.2": 0.0,
                        },
                        "states": {"status.1": status, "status.2": "Available"},
                        "meta": {"region": region, "rated_power_kw": 7.0, "connectors": 2},
                    },
                )
            )
        for i, dev in enumerate(("dc-a", "dc-b")):
            msgs.append(
                _msg(
                    "datacenter",
                    dev,
                    {
                        "ts": ts,
                        "metrics": {
                            "facility_energy_kwh": 500000.0 + (1180.0 + 40 * i) * r,
                            "it_energy_kwh": 420000.0 + 1000.0 * r,
                            "facility_power_kw": 7100.0,
                            "it_power_kw": 6000.0,
                            "racks_built": 4000.0 + 1000 * i,
                            "racks_in_service": 2700.0 + 600 * i,
                        },
                        "meta": {"region": "guian", "pue_category": 1},
                    },
                )
            )
    msgs.append(("gz/v1/reservoir/res-z/telemetry", b"{not json"))
    return msgs
