"""Realistic v1 messages of all four classes for the benchmarks: a fleet of devices,
each reporting at increasing timestamps, about 150-250 bytes a message."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson

MIX = (("reservoir", 0.15), ("power_line", 0.15), ("charger", 0.6), ("datacenter", 0.1))


def _doc(cls: str, k: int, rnd: random.Random) -> dict[str, object]:
    if cls == "reservoir":
        return {
            "rain_5min_mm": round(rnd.uniform(0, 3), 1),
            "rain_1h_mm": round(rnd.uniform(0, 20), 1),
            "rain_cum_mm": round(1000.0 + 0.001 * k, 3),
            "level_m": round(1050 + rnd.uniform(-2, 2), 3),
            "battery_v": round(rnd.uniform(11.8, 13.2), 2),
        }
    if cls == "power_line":
        return {
            "conductor_temp_c": round(rnd.uniform(5, 45), 1),
            "ice_thickness_mm": 0.0,
            "tension_n": round(rnd.uniform(20000, 30000)),
            "windage_deg": round(rnd.uniform(-5, 5), 1),
            "wind_speed_ms": round(rnd.uniform(0, 12), 1),
            "air_temp_c": round(rnd.uniform(-3, 25), 1),
            "humidity_pct": round(rnd.uniform(40, 99), 1),
        }
    if cls == "charger":
        return {
            "energy_wh": 1_000_000.0 + 50 * k,
            "power_w": round(rnd.uniform(0, 7200)),
            "current_a": round(rnd.uniform(0, 32), 1),
            "voltage_v": round(rnd.uniform(220, 235), 1),
        }
    return {
        "facility_energy_kwh": 5_000_000.0 + 300 * k,
        "it_energy_kwh": 4_100_000.0 + 250 * k,
        "facility_power_kw": round(rnd.uniform(1100, 1300), 1),
        "it_power_kw": round(rnd.uniform(900, 1050), 1),
        "racks_built": 4000,
        "racks_in_service": 2700,
    }


def generate(
    n: int, devices: int = 2000, seed: int = 1, start: datetime | None = None, ts_now: bool = False
) -> list[tuple[str, bytes]]:
    """`n` messages from `devices` devices; device i reports its k-th message at
    start + k seconds, so (device, time) never repeats."""
    rnd = random.Random(seed)
    start = start or datetime.now(UTC) - timedelta(days=2)
    classes: list[str] = []
    for cls, share in MIX:
        classes += [cls] * round(devices * share)
    classes = classes[:devices]
    out = []
    for i in range(n):
        d = i % len(classes)
        k = i // len(classes)
        cls = classes[d]
        ts = datetime.now(UTC) if ts_now else start + timedelta(seconds=k)
        doc: dict[str, object] = {
            "ts": ts.isoformat(timespec="microseconds"),
            "seq": k,
            "metrics": _doc(cls, k, rnd),
        }
        if cls == "charger" and k % 10 == 0:
            doc["states"] = {"status": "Charging"}
        out.append((f"gz/v1/{cls}/{cls[:2]}-{d:05d}/telemetry", orjson.dumps(doc)))
    return out
