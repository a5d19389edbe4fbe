"""The indicator report: a rollup result and the catalogue turned into what people
and the progress system read — per indicator its value, targets, progress and
status, for one region or all of them — as JSON-ready items and as CSV.

The read side is one flow: database → rollup result → this module → the API, the
status page, `/metrics` and the command line. Nothing here does I/O.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from ingest.indicators.catalogue import Catalogue, Indicator
from ingest.indicators.compute import Figure, RollupResult
from ingest.indicators.progress import progress, status
from ingest.indicators.regions import PROVINCE, report_keys

__all__ = ["Item", "Report", "iso", "item", "region_keys", "report", "years"]


class Item(TypedDict):
    """One indicator for one region; years are text keys (JSON object keys)."""

    key: str
    name_zh: str
    name_en: str
    unit: str
    device_class: str
    formula: str
    value: float | None
    interim: bool
    targets: dict[str, float | None]
    stretch: dict[str, bool]
    direction: str
    progress: dict[str, float | None]
    status: str
    lead: str
    clause: str
    inputs: dict[str, Any]


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def years(catalogue: Catalogue) -> list[int]:
    """Every target year of the catalogue, in order."""
    return sorted({t.year for i in catalogue.indicators for t in i.targets})


def region_keys() -> list[str]:
    """The regions a report covers, in the order people read them: the province, the
    prefectures, Gui'an, then `unknown`."""
    return list(report_keys())


def item(ind: Indicator, fig: Figure, region: str, as_of: datetime, all_years: list[int]) -> Item:
    targets = {t.year: t for t in ind.targets_for(region, PROVINCE)}
    return Item(
        key=ind.key,
        name_zh=ind.name_zh,
        name_en=ind.name_en,
        unit=ind.unit,
        device_class=ind.device_class,
        formula=ind.formula,
        value=fig.value,
        interim=fig.interim,
        targets={str(y): (targets[y].value if y in targets else None) for y in all_years},
        stretch={str(y): targets[y].stretch for y in all_years if y in targets},
        direction=ind.direction,
        progress={
            str(y): (progress(fig.value, targets[y].value, ind.direction) if y in targets else None)
            for y in all_years
        },
        status=status(fig.value, tuple(targets.values()), ind.direction, as_of),
        lead=ind.lead,
        clause=ind.clause,
        inputs=dict(fig.inputs),
    )


@dataclass(frozen=True, slots=True)
class Report:
    """The catalogue's indicators for one region as of one rollup."""

    as_of: datetime
    region: str
    plan: str
    years: list[int]
    items: list[Item]

    def as_json(self) -> dict[str, Any]:
        return {"as_of": iso(self.as_of), "region": self.region, "plan": self.plan, "indicators": self.items}

    def csv_rows(self) -> list[list[Any]]:
        out = []
        for it in self.items:
            row: list[Any] = [
                iso(self.as_of),
                self.region,
                it["key"],
                it["name_zh"],
                it["name_en"],
                it["unit"],
            ]
            row += [it["value"], str(it["interim"]).lower(), it["direction"]]
            row += [it["targets"][str(y)] for y in self.years] + [it["progress"][str(y)] for y in self.years]
            out.append([*("" if v is None else v for v in row), it["status"]])
        return out


def csv_header(all_years: list[int]) -> list[str]:
    head = ["as_of", "region", "key", "name_zh", "name_en", "unit", "value", "interim", "direction"]
    return head + [f"target_{y}" for y in all_years] + [f"progress_{y}" for y in all_years] + ["status"]


def to_csv(reports: Iterable[Report], all_years: list[int]) -> bytes:
    """One header, then a row per indicator of each report."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(all_years))
    for r in reports:
        w.writerows(r.csv_rows())
    return buf.getvalue().encode()


def report(catalogue: Catalogue, result: RollupResult, region: str) -> Report:
    ys = years(catalogue)
    items = [
        item(ind, result.figures[(ind.key, region)], region, result.as_of, ys) for ind in catalogue.indicators
    ]
    return Report(result.as_of, region, catalogue.plan, ys, items)


def one(catalogue: Catalogue, result: RollupResult, ind: Indicator, region: str) -> Item:
    return item(ind, result.figures[(ind.key, region)], region, result.as_of, years(catalogue))
