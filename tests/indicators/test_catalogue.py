"""The shipped catalogue matches INDICATORS.md; bad catalogues fail with clear errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ingest import indicators
from ingest.indicators import CatalogueError, load_catalogue
from ingest.indicators.catalogue import Target
from ingest.indicators.progress import BJT, progress, status
from ingest.indicators.regions import PROVINCE, UNKNOWN, normalise, regions

EXPECTED = {  # key: (2022 target, 2024 target, direction, 2024 stretch)
    "reservoir_stations": (391, 1820, "at_least", False),
    "reservoir_automation_coverage": (None, 100, "at_least", False),
    "overhead_line_terminals": (1000, 3000, "at_least", False),
    "smart_chargers": (32000, 40000, "at_least", True),
    "dc_standard_racks": (150000, 600000, "at_least", True),
    "dc_rack_utilization": (None, 65, "at_least", False),
    "dc_average_pue": (None, 1.2, "below", False),
    "dc_demo_pue": (None, 1.15, "below", False),
    "iot_connections": (6_000_000, 10_000_000, "at_least", False),
}


def test_public_surface() -> None:
    assert sorted(indicators.__all__) == sorted(n for n in indicators.__all__ if hasattr(indicators, n))


def test_shipped_catalogue_has_every_row_of_the_plan_table() -> None:
    cat = load_catalogue()
    assert cat.keys == tuple(EXPECTED)
    for ind in cat.indicators:
        t22, t24, direction, stretch = EXPECTED[ind.key]
        by_year = {t.year: t for t in ind.targets}
        assert (by_year[2022].value if 2022 in by_year else None) == t22
        assert by_year[2024].value == t24 and by_year[2024].stretch is stretch
        assert ind.direction == direction
        assert ind.name_zh and ind.name_en and ind.lead and ind.clause and ind.unit


def test_regions() -> None:
    keys = [r.key for r in regions()]
    assert keys[0] == PROVINCE and "guian" in keys and len(keys) == 11
    assert normalise("520500") == "520500"
    assert normalise("GuiAn") == "guian"
    assert normalise(None) == normalise("520000") == normalise("520501") == UNKNOWN


GOOD = """
plan = "p"
title_zh = "t"
title_en = "t"
[[indicator]]
key = "x_count"
name_zh = "x"
name_en = "x"
unit = "n"
class = "charger"
formula = "devices_built"
direction = "at_least"
target_scope = "province"
lead = "l"
clause = "c"
targets = { "2027" = { value = 5 } }
"""


def test_successor_catalogue_loads_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "next.toml"
    f.write_text(GOOD)
    cat = load_catalogue(f)
    assert cat.keys == ("x_count",) and cat.indicators[0].targets == (Target(2027, 5.0),)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('formula = "devices_built"', 'formula = "avg"'), "indicator[0] (x_count).formula: unknown 'avg'"),
        (('class = "charger"', 'class = "toaster"'), "(x_count).class: formula devices_built needs class"),
        (('direction = "at_least"', 'direction = "most"'), "(x_count).direction: expected at_least or below"),
        (('"2027" = { value = 5 }', '"27" = { value = 5 }'), "(x_count).targets.27: the key must be a year"),
        (("{ value = 5 }", '{ value = "5" }'), "(x_count).targets.2027.value: expected a positive number"),
        (('unit = "n"', 'unit = ""'), "(x_count).unit: expected non-empty text"),
        (('lead = "l"', 'lead = "l"\nowner = "x"'), "indicator[0]: unknown field 'owner'"),
        (('key = "x_count"', 'key = "X"'), "indicator[0].key: 'X' is not snake_case"),
    ],
)
def test_validation_names_the_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace(*change))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(f)
    assert message in str(info.value) and str(f) in str(info.value)


def test_duplicate_keys_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "dup.toml"
    f.write_text(GOOD + GOOD[GOOD.index("[[indicator]]") :])
    with pytest.raises(CatalogueError, match="'x_count' appears twice"):
        load_catalogue(f)
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "none.toml")


def test_progress_and_status() -> None:
    later = datetime(2026, 1, 1, tzinfo=BJT)
    mid = datetime(2023, 6, 1, tzinfo=BJT)
    ts = (Target(2022, 391), Target(2024, 1820))
    assert progress(910, 1820, "at_least") == 0.5
    assert progress(1.25, 1.2, "below") == pytest.approx(0.96)
    assert progress(0, 1.2, "below") is None
    assert status(2000, ts, "at_least", later) == "met"
    assert status(400, ts, "at_least", mid) == "on_track"
    assert status(300, ts, "at_least", mid) == "behind"  # the 2022 target fell due
    assert status(400, ts, "at_least", later) == "behind"
    assert status(1.2, (Target(2024, 1.2),), "below", later) == "behind"  # "< 1.2" is strict
    assert status(1.1, (Target(2024, 1.2),), "below", later) == "met"
    assert status(None, ts, "at_least", later) == "no_data"
    assert status(5, (), "at_least", later) == "no_target"
