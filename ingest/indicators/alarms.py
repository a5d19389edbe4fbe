"""Bounded counts of devices in alarm (docs/operations.md): a device's latest reading
against its thresholds, counted per alarm, class and region. Pure.

Prometheus holds no per-device series; these counts let alert rules name the region
while the dashboards name the devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ingest.indicators.regions import PROVINCE, report_keys

# alarm -> class
ALARMS: Final[Mapping[str, str]] = {
    "above_flood_limit": "reservoir",
    "ice_50pct_design": "power_line",
    "ice_80pct_design": "power_line",
    "conductor_temp_70c": "power_line",
    "conductor_temp_80c": "power_line",
    "faulted": "charger",
}


@dataclass(frozen=True, slots=True)
class Latest:
    """A device's latest values within its class's online window, and its thresholds."""

    device_id: str
    device_class: str
    region: str
    level_m: float | None = None
    flood_limit_level_m: float | None = None
    ice_thickness_mm: float | None = None
    design_ice_mm: float | None = None
    conductor_temp_c: float | None = None
    faulted: bool = False


def in_alarm(d: Latest) -> list[str]:
    out = []
    if d.level_m is not None and d.flood_limit_level_m is not None and d.level_m > d.flood_limit_level_m:
        out.append("above_flood_limit")
    if d.ice_thickness_mm is not None and d.design_ice_mm:
        if d.ice_thickness_mm >= 0.5 * d.design_ice_mm:
            out.append("ice_50pct_design")
        if d.ice_thickness_mm >= 0.8 * d.design_ice_mm:
            out.append("ice_80pct_design")
    if d.conductor_temp_c is not None:
        if d.conductor_temp_c >= 70:
            out.append("conductor_temp_70c")
        if d.conductor_temp_c >= 80:
            out.append("conductor_temp_80c")
    if d.faulted:
        out.append("faulted")
    return out


def count(devices: Iterable[Latest]) -> dict[tuple[str, str, str], int]:
    """(alarm, class, region) -> devices in alarm; every pair present, zero included."""
    out = {(a, cls, r): 0 for a, cls in ALARMS.items() for r in report_keys()}
    for d in devices:
        for a in in_alarm(d):
            out[(a, d.device_class, PROVINCE)] += 1
            if d.region != PROVINCE:
                out[(a, d.device_class, d.region)] += 1
    return out
