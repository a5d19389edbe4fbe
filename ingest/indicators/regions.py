"""Regions: the province, its nine prefecture-level divisions (GB/T 2260) and
Gui'an New Area, loaded from `ingest/data/regions.toml`; and the rule that maps a
device's region text to a region key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

PROVINCE: Final = "520000"
UNKNOWN: Final = "unknown"  # devices with no known region: they count toward the province only


@dataclass(frozen=True, slots=True)
class Region:
    key: str
    name_zh: str
    name_en: str
    level: str  # province, prefecture or new_area


@cache
def regions() -> tuple[Region, ...]:
    """The province first, then the prefectures and Gui'an, in file order."""
    text = (resources.files("ingest") / "data" / "regions.toml").read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    out = tuple(Region(r["key"], r["name_zh"], r["name_en"], r["level"]) for r in doc["region"])
    if not out or out[0].key != PROVINCE:
        raise RuntimeError("regions.toml: the province must come first")
    return out


@cache
def region_keys() -> frozenset[str]:
    return frozenset(r.key for r in regions())


def report_keys() -> tuple[str, ...]:
    """Every key a figure is reported for: the regions, then `unknown`."""
    return (*(r.key for r in regions()), UNKNOWN)


def normalise(hint: str | None) -> str:
    """A device's region key: a known prefecture or Gui'an, else UNKNOWN.

    The province code itself says nothing about where a device is, so it maps to
    UNKNOWN too; so do county codes (a prefecture is not guessed from them, to
    keep a typo from silently landing in the wrong prefecture)."""
    if hint is None:
        return UNKNOWN
    key = hint.strip().lower() if hint.strip().lower() == "guian" else hint.strip()
    return key if key in region_keys() and key != PROVINCE else UNKNOWN
