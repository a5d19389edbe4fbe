"""The fleet's composition: which devices exist, where, with which attributes. Pure.

`build_fleet(scale, seed)` returns the same devices for the same arguments. Scale 1.0
is the plan's 2024 targets (INDICATORS.md): 1,820 reservoir stations, 3,000 line
terminals, 40,000 charging points counted as charge points (one device each, with 1
or 2 connectors: about 52,000 connectors) and data centres in Gui'an whose standard
racks add up to 600,000.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ingest.simulate.rng import derive_seed

CLASS_NAMES: Final = ("reservoir", "power_line", "charger", "datacenter")

# Plan targets for 2024 (INDICATORS.md): devices per class, racks for data centres.
TARGETS: Final[Mapping[str, int]] = {
    "reservoir": 1_820,
    "power_line": 3_000,
    "charger": 40_000,
    "dc_standard_racks": 600_000,
}
DATACENTER_SITES_AT_FULL_SCALE: Final = 48
MIN_DATACENTER_SITES: Final = 3  # so a small demo still has a demonstration site

PREFECTURES: Final[Mapping[str, str]] = {
    "520100": "贵阳市",
    "520200": "六盘水市",
    "520300": "遵义市",
    "520400": "安顺市",
    "520500": "毕节市",
    "520600": "铜仁市",
    "522300": "黔西南州",
    "522600": "黔东南州",
    "522700": "黔南州",
}
GUIAN: Final = "guian"
ICING_REGIONS: Final = frozenset(("520500", "520200"))

# Share of each class per region. Reservoirs follow the number of small reservoirs
# (Zunyi and the south-east have most); line terminals go where lines ice (Bijie,
# Liupanshui); chargers follow population, Guiyang first; data centres are the
# Gui'an hub-node cluster.
WEIGHTS: Final[Mapping[str, Mapping[str, float]]] = {
    "reservoir": {
        "520100": 0.06, "520200": 0.07, "520300": 0.20, "520400": 0.08, "520500": 0.14,
        "520600": 0.12, "522300": 0.09, "522600": 0.13, "522700": 0.11,
    },
    "power_line": {
        "520100": 0.08, "520200": 0.22, "520300": 0.10, "520400": 0.06, "520500": 0.30,
        "520600": 0.05, "522300": 0.07, "522600": 0.06, "522700": 0.06,
    },
    "charger": {
        "520100": 0.42, "520200": 0.06, "520300": 0.15, "520400": 0.06, "520500": 0.08,
        "520600": 0.05, "522300": 0.06, "522600": 0.06, "522700": 0.06,
    },
    "datacenter": {GUIAN: 1.0},
}

# Typical ground elevation (m a.s.l.) for reservoir levels.
_ELEVATION: Final = {
    "520100": 1100, "520200": 1700, "520300": 900, "520400": 1300, "520500": 1600,
    "520600": 600, "522300": 1200, "522600": 700, "522700": 900,
}
_PLACES: Final = (
    "青龙", "白岩", "红旗", "团结", "跃进", "石门", "龙潭", "双河", "黄泥", "大坪", "新寨",
    "水口", "杨柳", "马场", "松林", "落水", "高峰", "长冲", "沙坝", "羊角", "岩脚", "河坝",
)
_LINE_ENDS: Final = (
    "鸭溪", "威宁", "赫章", "水城", "盘州", "纳雍", "织金", "黔西", "大方", "六枝", "钟山",
    "金沙", "习水", "福泉", "都匀", "凯里", "兴义", "铜仁", "安顺", "清镇", "息烽", "奢香",
)
_CHARGE_OPERATORS: Final = ("国家电网", "南方电网", "特来电", "星星充电", "小桔充电", "贵州交投")
_DC_OPERATORS: Final = (
    "中国移动", "中国联通", "中国电信", "华为云", "腾讯", "云上贵州", "贵安大数据", "富士康",
)

Attr = str | float | int


@dataclass(frozen=True, slots=True)
class Device:
    """One simulated device. `attributes` are the class's meta fields (sent in `meta`
    and provisioned); `sizing` holds private figures the physics needs."""

    index: int
    device_id: str
    device_class: str
    region: str
    site: str
    name: str
    attributes: Mapping[str, Attr]
    sizing: Mapping[str, float]

    def meta(self) -> dict[str, Attr]:
        return {"region": self.region, "site": self.site, "name": self.name, **self.attributes}

    def record(self) -> dict[str, object]:
        """The provisioning record (POST /api/v1/devices)."""
        return {
            "device_id": self.device_id,
            "class": self.device_class,
            "region": self.region,
            "site": self.site,
            "name": self.name,
            "attributes": dict(self.attributes),
        }


def apportion(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split `total` over the keys in proportion to `weights`, exactly (largest
    remainder, ties broken by key order)."""
    s = sum(weights.values())
    raw = {k: total * w / s for k, w in weights.items()}
    out = {k: int(v) for k, v in raw.items()}
    rest = total - sum(out.values())
    order = sorted(weights, key=lambda k: (-(raw[k] - out[k]), list(weights).index(k)))
    for k in order[:rest]:
        out[k] += 1
    return out


def class_counts(scale: float) -> dict[str, int]:
    """Devices per class at a scale (at least one of each)."""
    sites = max(MIN_DATACENTER_SITES, round(DATACENTER_SITES_AT_FULL_SCALE * scale))
    return {
        "reservoir": max(1, round(TARGETS["reservoir"] * scale)),
        "power_line": max(1, round(TARGETS["power_line"] * scale)),
        "charger": max(1, round(TARGETS["charger"] * scale)),
        "datacenter": sites,
    }


def build_fleet(
    scale: float, seed: int, classes: Iterable[str] = CLASS_NAMES
) -> tuple[Device, ...]:
    """The fleet, in a stable order: by class, then region, then number."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    wanted = set(classes)
    unknown = wanted - set(CLASS_NAMES)
    if unknown:
        raise ValueError(f"unknown device classes {sorted(unknown)}")
    counts = class_counts(scale)
    devices: list[Device] = []
    for cls in CLASS_NAMES:
        if cls not in wanted:
            continue
        # One generator per class: filtering classes leaves the others unchanged.
        rnd = random.Random(derive_seed(seed, "fleet", cls))
        if cls == "datacenter":
            devices.extend(_datacenters(rnd, counts[cls], round(TARGETS["dc_standard_racks"] * scale),
                                        len(devices)))
            continue
        per_region = apportion(counts[cls], WEIGHTS[cls])
        for region, n in per_region.items():
            for k in range(1, n + 1):
                devices.append(_MAKERS[cls](rnd, len(devices), region, k))
    return tuple(devices)


def _reservoir(rnd: random.Random, index: int, region: str, k: int) -> Device:
    place = rnd.choice(_PLACES)
    site = f"{PREFECTURES[region]}{place}水库"
    flood_limit = round(_ELEVATION[region] + rnd.uniform(-250, 250) + rnd.uniform(10, 40), 2)
    attrs: dict[str, Attr] = {
        "flood_limit_level_m": flood_limit,
        "design_flood_level_m": round(flood_limit + rnd.uniform(1.5, 4.0), 2),
        "dead_level_m": round(flood_limit - rnd.uniform(8, 25), 2),
        "reservoir_code": f"{region}-SK{k:04d}",
    }
    return Device(index, f"rsv-{region}-{k:05d}", "reservoir", region, site,
                  f"{site}雨水情及大坝安全监测站", attrs, {"piezometers": rnd.choice((2, 3))})


def _power_line(rnd: random.Random, index: int, region: str, k: int) -> Device:
    a, b = rnd.sample(_LINE_ENDS, 2)
    kv = rnd.choices((110.0, 220.0, 500.0), (0.4, 0.4, 0.2))[0]
    line = f"{int(kv)}kV{a}{b}{rnd.choice('一二')}回线"
    tower = f"N{rnd.randint(1, 320)}"
    if region in ICING_REGIONS:
        ice = rnd.choices((15.0, 20.0, 30.0), (0.3, 0.4, 0.3))[0]
    else:
        ice = rnd.choices((10.0, 15.0), (0.6, 0.4))[0]
    attrs: dict[str, Attr] = {"line": line, "tower": tower, "design_ice_mm": ice, "voltage_kv": kv}
    return Device(index, f"pl-{region}-{k:05d}", "power_line", region, line,
                  f"{line}{tower}在线监测终端", attrs, {})


def _charger(rnd: random.Random, index: int, region: str, k: int) -> Device:
    dc = rnd.random() < 0.45
    if dc:
        rated = rnd.choices((60.0, 120.0, 160.0, 240.0), (0.25, 0.4, 0.25, 0.1))[0]
        connectors = 2 if rnd.random() < 0.7 else 1
    else:
        rated, connectors = rnd.choices((7.0, 11.0), (0.85, 0.15))[0], 1
    operator = rnd.choice(_CHARGE_OPERATORS)
    site = f"{PREFECTURES[region]}{rnd.choice(_PLACES)}充电站{rnd.randint(1, 40)}号"
    attrs: dict[str, Attr] = {
        "rated_power_kw": rated,
        "connectors": connectors,
        "current_type": "DC" if dc else "AC",
        "operator": operator,
    }
    return Device(index, f"cp-{region}-{k:05d}", "charger", region, site,
                  f"{site}{k}号桩", attrs, {})


def _datacenters(rnd: random.Random, n: int, racks: int, first: int) -> list[Device]:
    # Heavy-tailed sizes (a few operators run most racks), scaled to sum exactly.
    sizes = {str(i): rnd.lognormvariate(0.0, 0.8) for i in range(n)}
    built = apportion(racks, sizes)
    demo = {i for i in range(n) if rnd.random() < 0.2} or {0}
    out = []
    for i in range(n):
        operator = _DC_OPERATORS[i % len(_DC_OPERATORS)] if i < len(_DC_OPERATORS) else rnd.choice(
            _DC_OPERATORS)
        site = f"{operator}贵安数据中心{i // len(_DC_OPERATORS) + 1}期"
        attrs: dict[str, Attr] = {
            "pue_category": rnd.choices((1, 2, 3), (0.25, 0.6, 0.15))[0],
            "demo_project": "yes" if i in demo else "no",
            "operator": operator,
        }
        out.append(Device(first + i, f"dc-{GUIAN}-{i + 1:03d}", "datacenter", GUIAN, site,
                          f"{site}能耗计量", attrs, {"racks_built": float(built[str(i)])}))
    return out


_MAKERS = {"reservoir": _reservoir, "power_line": _power_line, "charger": _charger}
