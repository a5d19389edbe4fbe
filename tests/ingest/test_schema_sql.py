"""The committed SQL of ingest/sql/ is what the class declarations generate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pglast
import pytest

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
