"""`ingest provision` and `ingest indicators` against the real database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from ingest import cli
from ingest.migrate import migrate
from tests.indicators.plant import PROVISION_CSV


async def test_provision_then_print(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
    finally:
        await conn.close()
    monkeypatch.setenv("INGEST_DATABASE_URL", db_url)
    f = tmp_path / "fleet.csv"
    f.write_text(PROVISION_CSV)
    assert await asyncio.to_thread(cli.main, ["provision", str(f)]) == 0
    assert "provisioned 5 devices" in capsys.readouterr().out
    code = await asyncio.to_thread(cli.main, ["indicators", "--region", "520500", "--format", "json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    cov = next(i for i in doc["indicators"] if i["key"] == "reservoir_automation_coverage")
    assert cov["value"] == 0.0 and cov["inputs"]["provisioned"] == 2
    assert await asyncio.to_thread(cli.main, ["indicators"]) == 0
    table = capsys.readouterr().out
    assert "smart_chargers" in table and "behind" in table
    assert await asyncio.to_thread(cli.main, ["indicators", "--format", "csv", "--region", "guian"]) == 0
    assert capsys.readouterr().out.startswith("as_of,region,key,")
    assert await asyncio.to_thread(cli.main, ["indicators", "--region", "xx"]) == 2
    f.write_text("device_id,class\nx,toaster\n")
    assert await asyncio.to_thread(cli.main, ["provision", str(f)]) == 2
    assert "csv line 2.class" in capsys.readouterr().err
