"""The indicator catalogue: the plan's indicators as data, loaded and validated.

The shipped file is `ingest/data/indicators.toml`; a successor plan loads its own
file of the same layout (setting `rollup.catalogue`) without a release. Every error
names the file, the indicator and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from adapters import CLASSES

# Formula name -> the device classes it can be computed for ("*" = every class).
FORMULAS: Final[Mapping[str, frozenset[str]]] = {
    "devices_built": frozenset({c.name for c in CLASSES}),
    "devices_online": frozenset({"*", *(c.name for c in CLASSES)}),
    "reservoirs_automated": frozenset({"reservoir"}),
    "automation_coverage": frozenset({"reservoir"}),
    "racks_built": frozenset({"datacenter"}),
    "rack_utilization": frozenset({"datacenter"}),
    "pue": frozenset({"datacenter"}),
    "pue_demo": frozenset({"datacenter"}),
}
DIRECTIONS: Final = ("at_least", "below")
SCOPES: Final = ("province", "every_region")
_KEY = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
_FIELDS: Final = (
    "key",
    "name_zh",
    "name_en",
    "unit",
    "class",
    "formula",
    "direction",
    "target_scope",
    "lead",
    "clause",
    "targets",
)


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names file, indicator and field."""


@dataclass(frozen=True, slots=True)
class Target:
    year: int
    value: float
    stretch: bool = False  # 力争: a target to strive for


@dataclass(frozen=True, slots=True)
class Indicator:
    key: str
    name_zh: str
    name_en: str
    unit: str
    device_class: str  # a class name, or "*" for every class
    formula: str
    direction: str  # "at_least" or "below"
    target_scope: str  # "province" or "every_region"
    lead: str
    clause: str
    targets: tuple[Target, ...]  # by year, ascending

    def targets_for(self, region: str, province: str) -> tuple[Target, ...]:
        return self.targets if self.target_scope == "every_region" or region == province else ()


@dataclass(frozen=True, slots=True)
class Catalogue:
    plan: str
    title_zh: str
    title_en: str
    indicators: tuple[Indicator, ...]
    source: str

    def get(self, key: str) -> Indicator | None:
        for ind in self.indicators:
            if ind.key == key:
                return ind
        return None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(i.key for i in self.indicators)


def _text(where: str, doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{where}.{name}: expected non-empty text, got {value!r}")
    return value


def _targets(where: str, raw: Any) -> tuple[Target, ...]:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}.targets: expected a table of year = {{ value = ... }}")
    out = []
    for year, spec in raw.items():
        w = f"{where}.targets.{year}"
        if not (isinstance(year, str) and re.fullmatch(r"20\d\d", year)):
            raise CatalogueError(f'{w}: the key must be a year like "2024"')
        if not isinstance(spec, dict) or not set(spec) <= {"value", "stretch"} or "value" not in spec:
            raise CatalogueError(f"{w}: expected {{ value = <number>, stretch = <bool> }}")
        value = spec["value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise CatalogueError(f"{w}.value: expected a positive number, got {value!r}")
        stretch = spec.get("stretch", False)
        if not isinstance(stretch, bool):
            raise CatalogueError(f"{w}.stretch: expected true or false, got {stretch!r}")
        out.append(Target(int(year), float(value), stretch))
    out.sort(key=lambda t: t.year)
    return tuple(out)


def _indicator(where: str, doc: Any) -> Indicator:
    if not isinstance(doc, dict):
        raise CatalogueError(f"{where}: expected a table")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise CatalogueError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
    key = _text(where, doc, "key")
    if not _KEY.match(key):
        raise CatalogueError(f"{where}.key: {key!r} is not snake_case (a-z, 0-9, _)")
    where = f"{where} ({key})"
    formula = _text(where, doc, "formula")
    if formula not in FORMULAS:
        raise CatalogueError(f"{where}.formula: unknown {formula!r} (known: {', '.join(FORMULAS)})")
    cls = _text(where, doc, "class")
    if cls not in FORMULAS[formula]:
        raise CatalogueError(
            f"{where}.class: formula {formula} needs class {' or '.join(sorted(FORMULAS[formula]))}, "
            f"not {cls!r}"
        )
    direction = _text(where, doc, "direction")
    if direction not in DIRECTIONS:
        raise CatalogueError(f"{where}.direction: expected at_least or below, got {direction!r}")
    scope = _text(where, doc, "target_scope")
    if scope not in SCOPES:
        raise CatalogueError(f"{where}.target_scope: expected province or every_region, got {scope!r}")
    return Indicator(
        key=key,
        name_zh=_text(where, doc, "name_zh"),
        name_en=_text(where, doc, "name_en"),
        unit=_text(where, doc, "unit"),
        device_class=cls,
        formula=formula,
        direction=direction,
        target_scope=scope,
        lead=_text(where, doc, "lead"),
        clause=_text(where, doc, "clause"),
        targets=_targets(where, doc.get("targets", {})),
    )


def parse_catalogue(text: str, source: str) -> Catalogue:
    """Parse and validate catalogue TOML; `source` names it in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{source}: {exc}") from None
    unknown = sorted(set(doc) - {"plan", "title_zh", "title_en", "indicator"})
    if unknown:
        raise CatalogueError(f"{source}: unknown top-level key {unknown[0]!r}")
    rows = doc.get("indicator")
    if not isinstance(rows, list) or not rows:
        raise CatalogueError(f"{source}: no [[indicator]] tables")
    indicators = tuple(_indicator(f"{source}: indicator[{i}]", row) for i, row in enumerate(rows))
    seen: set[str] = set()
    for ind in indicators:
        if ind.key in seen:
            raise CatalogueError(f"{source}: indicator key {ind.key!r} appears twice")
        seen.add(ind.key)
    return Catalogue(
        plan=_text(source, doc, "plan"),
        title_zh=_text(source, doc, "title_zh"),
        title_en=_text(source, doc, "title_en"),
        indicators=indicators,
        source=source,
    )


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue at `path`, or the one shipped with the package."""
    if path is None:
        text = (resources.files("ingest") / "data" / "indicators.toml").read_text(encoding="utf-8")
        return parse_catalogue(text, "indicators.toml (shipped)")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{p}: cannot read ({exc.strerror})") from None
    return parse_catalogue(text, str(p))
