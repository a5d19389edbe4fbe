"""The committed SQL of ingest/sql/ is what the class declarations generate."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pglast
import pytest
from pglast import ast

from adapters import CLASSES, Metric
from ingest.schema_sql import default_dir, generate, main


@pytest.mark.parametrize("name", sorted(generate()))
def test_committed_sql_is_generated(name: str) -> None:
    text = (default_dir() / name).read_text(encoding="utf-8")
    assert text == generate()[name], f"{name} is stale: run python -m ingest.schema_sql --write"
    assert pglast.parse_sql(text)


def test_check_passes() -> None:
    assert main(["--check"]) == 0


def test_check_fails_on_a_hand_edit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sql"
    shutil.copytree(default_dir(), folder)
    edited = folder / "001_core.plain.sql"
    edited.write_text(edited.read_text(encoding="utf-8").replace("avg(", "sum(", 1), encoding="utf-8")
    assert main(["--check", "--dir", str(folder)]) == 1
    assert "001_core.plain.sql" in capsys.readouterr().err
    assert main(["--write", "--dir", str(folder)]) == 0
    assert main(["--check", "--dir", str(folder)]) == 0


def test_a_new_metric_is_one_declaration_and_one_generated_migration() -> None:
    """Declaring a metric `since=9` on one class makes migration 009: its column, the
    class's views and continuous aggregates rebuilt with it, and the history recorded
    as late so that the refresh job fills the rebuilt aggregates; 001 is unchanged."""
    dc = next(c for c in CLASSES if c.name == "datacenter")
    extra = Metric("cooling_power_kw", "kW", 0, 1e6, "cooling power", since=9)
    classes = [dataclasses.replace(c, metrics=(*c.metrics, extra)) if c is dc else c for c in CLASSES]
    files = generate(classes)
    assert {k: v for k, v in files.items() if k.startswith("001_")} == generate()
    assert set(files) - set(generate()) == {f"009_metrics{s}.sql" for s in ("", ".plain", ".timescale")}
    common, plain, timescale = (files[f"009_metrics{s}.sql"] for s in ("", ".plain", ".timescale"))
    (alter,) = [r.stmt for r in pglast.parse_sql(common)]
    assert isinstance(alter, ast.AlterTableStmt) and alter.relation.relname == "readings_datacenter"
    (cmd,) = alter.cmds
    assert cmd.def_.colname == "cooling_power_kw" and cmd.missing_ok
    views = [r.stmt for r in pglast.parse_sql(plain) if isinstance(r.stmt, ast.ViewStmt)]
    assert [v.view.relname for v in views] == ["readings_datacenter_hourly", "readings_datacenter_daily"]
    aggs = [r.stmt for r in pglast.parse_sql(timescale) if isinstance(r.stmt, ast.CreateTableAsStmt)]
    assert [a.into.rel.relname for a in aggs] == ["readings_datacenter_hourly", "readings_datacenter_daily"]
    for stmt in (*views, *aggs):
        names = {t.name for t in stmt.query.targetList}
        assert {"cooling_power_kw_avg", "cooling_power_kw_min", "cooling_power_kw_max"} <= names
    drops = [r.stmt for r in pglast.parse_sql(timescale) if isinstance(r.stmt, ast.DropStmt)]
    assert all(d.removeType == pglast.enums.ObjectType.OBJECT_MATVIEW and d.missing_ok for d in drops)
    assert len(drops) == 2 and "add_continuous_aggregate_policy('readings_datacenter_daily'" in timescale
    assert "INSERT INTO late_ranges (hypertable, lo, hi)\nSELECT 'readings_datacenter'" in timescale
