"""The rollup math: from per-device facts and meter energies to the fleet counts and
the indicator figures of every region. Pure: no database, no clock.

Every figure is computed for each region key (the province, the prefectures, Gui'an)
and for `unknown` (devices without a known region, which also count toward the
province). Ratios are ratios of sums, never means of ratios.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters import CLASSES
from ingest.indicators.catalogue import Catalogue, Indicator
from ingest.indicators.energy import Energy, coverage, total
from ingest.indicators.regions import PROVINCE, report_keys

INTERIM_COVERAGE = 0.95  # below this share of the window, a PUE is interim
FULL_WINDOW_DAYS = 365  # ISO/IEC 30134-2: a shorter period gives an interim PUE


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the rollup needs to know of one (not decommissioned) device."""

    device_id: str
    device_class: str
    region: str  # a region key, or UNKNOWN
    provisioned: bool
    reported: bool  # built: reported at least once
    online: bool  # reported within its class's expected interval, and not gone offline
    automated: bool = False  # reservoir: an automatic report with level and rain
    racks_built: float | None = None
    racks_in_service: float | None = None
    pue_category: int | None = None
    demo: bool = False


@dataclass(frozen=True, slots=True)
class Params:
    now: datetime
    window_days: float
    pue_category: int


@dataclass(frozen=True, slots=True)
class Figure:
    value: float | None
    interim: bool
    inputs: Mapping[str, Any]


@dataclass(slots=True)
class RollupResult:
    as_of: datetime
    # (class, region) -> (built, online)
    fleet: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    # (indicator key, region) -> figure
    figures: dict[tuple[str, str], Figure] = field(default_factory=dict)
    # (alarm, class, region) -> devices in alarm (alarms.count)
    alarms: dict[tuple[str, str, str], int] = field(default_factory=dict)
    duration_s: float = 0.0


def _pct(num: float, den: float) -> float | None:
    return 100.0 * num / den if den > 0 else None


def _pue(
    devices: list[DeviceFacts], energies: Mapping[str, Energy], params: Params, demo_only: bool
) -> Figure:
    window_s = params.window_days * 86400.0
    chosen = [
        d
        for d in devices
        if d.pue_category == params.pue_category and d.device_id in energies and (d.demo or not demo_only)
    ]
    e = total(energies[d.device_id] for d in chosen)
    other = sorted({d.pue_category for d in devices if d.pue_category not in (None, params.pue_category)})
    cov = coverage(e, window_s)
    inputs = {
        "pue_category": params.pue_category,
        "facility_kwh": e.facility_kwh,
        "it_kwh": e.it_kwh,
        "meters": e.meters,
        "coverage": round(cov, 6),
        "window_days": params.window_days,
        "resets": e.resets,
        "rejected_steps": e.rejected,
        "uncategorised_meters": sum(1 for d in devices if d.pue_category is None),
        "other_categories": other,
    }
    value = e.pue
    interim = value is not None and (params.window_days < FULL_WINDOW_DAYS or cov < INTERIM_COVERAGE)
    return Figure(value, interim, inputs)


def _figure(
    ind: Indicator, by_class: Mapping[str, list[DeviceFacts]], energies: Mapping[str, Energy], params: Params
) -> Figure:
    if ind.device_class == "*":
        cls = [d for group in by_class.values() for d in group]
    else:
        cls = by_class.get(ind.device_class, [])
    f = ind.formula
    if f == "devices_built":
        n = sum(d.reported for d in cls)
        return Figure(float(n), False, {"built": n, "provisioned": sum(d.provisioned for d in cls)})
    if f == "devices_online":
        n = sum(d.online for d in cls)
        return Figure(float(n), False, {"online": n, "built": sum(d.reported for d in cls)})
    if f == "reservoirs_automated":
        n = sum(d.automated for d in cls)
        return Figure(float(n), False, {"automated": n, "built": sum(d.reported for d in cls)})
    if f == "automation_coverage":
        provisioned = sum(d.provisioned for d in cls)
        automated = sum(d.automated and d.provisioned for d in cls)
        unregistered = sum(d.automated and not d.provisioned for d in cls)
        return Figure(
            _pct(automated, provisioned),
            False,
            {"automated": automated, "provisioned": provisioned, "automated_unprovisioned": unregistered},
        )
    if f == "racks_built":
        known = [d.racks_built for d in cls if d.racks_built is not None]
        return Figure(float(sum(known)), False, {"racks_built": sum(known), "sites": len(known)})
    if f == "rack_utilization":
        both = [d for d in cls if d.racks_built is not None and d.racks_in_service is not None]
        built = sum(d.racks_built or 0.0 for d in both)
        used = sum(d.racks_in_service or 0.0 for d in both)
        return Figure(_pct(used, built), False, {"racks_in_service": used, "racks_built": built})
    if f in ("pue", "pue_demo"):
        return _pue(cls, energies, params, demo_only=f == "pue_demo")
    raise AssertionError(f"formula {f} passed validation but has no implementation")


def rollup(
    catalogue: Catalogue,
    devices: Iterable[DeviceFacts],
    energies: Mapping[str, Energy],
    params: Params,
) -> RollupResult:
    """Fleet counts per class and region, and every indicator for every region."""
    groups: dict[str, dict[str, list[DeviceFacts]]] = {r: {} for r in report_keys()}
    for d in devices:
        groups[PROVINCE].setdefault(d.device_class, []).append(d)
        if d.region != PROVINCE:
            groups[d.region].setdefault(d.device_class, []).append(d)
    result = RollupResult(as_of=params.now)
    for region, by_class in groups.items():
        for c in CLASSES:
            of_class = by_class.get(c.name, [])
            result.fleet[(c.name, region)] = (
                sum(d.reported for d in of_class),
                sum(d.online for d in of_class),
            )
        for ind in catalogue.indicators:
            result.figures[(ind.key, region)] = _figure(ind, by_class, energies, params)
    return result
