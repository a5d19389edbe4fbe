"""The audit trail: provisioning (before and after), decommissioning and replays are
recorded with the token's name (or cli:<user>); GET /api/v1/audit is for admins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingest import cli
from tests.api.test_api import Fed
from tests.indicators.plant import ADMIN, READ


async def call(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers, json=body) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


async def test_changes_are_recorded_with_who_and_what(
    fed: Fed, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = fed
    assert (await call("GET", f"{base}/api/v1/audit", READ))[0] == 403
    status, body = await call("PUT", f"{base}/api/v1/devices/res-a", ADMIN,
                              {"class": "reservoir", "site": "new site"})  # fmt: skip
    assert status == 200
    assert (await call("DELETE", f"{base}/api/v1/devices/res-b", ADMIN))[0] == 204
    assert (await call("POST", f"{base}/api/v1/dead-letters/replay", ADMIN))[0] == 200
    monkeypatch.setenv("INGEST_DATABASE_URL", db_url)
    f = tmp_path / "one.csv"
    f.write_text("device_id,class,region\nres-new,reservoir,520100\n")
    assert await asyncio.to_thread(cli.main, ["provision", str(f)]) == 0

    status, body = await call("GET", f"{base}/api/v1/audit", ADMIN)
    assert status == 200
    entries = body["entries"]
    assert [e["action"] for e in entries[:4]] == ["provision", "replay", "decommission", "provision"]
    cli_entry, replay, gone, put = entries[:4]
    assert cli_entry["actor"].startswith("cli") and cli_entry["target"] == "res-new"
    assert cli_entry["detail"]["before"] is None and cli_entry["detail"]["after"]["region"] == "520100"
    assert replay["actor"] == "ops" and replay["target"] == "dead_letters"
    assert gone == {**gone, "actor": "ops", "target": "res-b"}
    assert put["target"] == "res-a" and put["actor"] == "ops"
    assert put["detail"]["before"]["site"] == "甲水库" and put["detail"]["after"]["site"] == "new site"
    # the fixture's bulk provisioning: one entry per device, by the admin token's name
    first = [e for e in entries if e["action"] == "provision" and e["detail"]["before"] is None]
    assert {e["target"] for e in first} >= {"res-a", "res-b", "res-c", "pl-1", "dc-2"}
    status, page = await call("GET", f"{base}/api/v1/audit?action=decommission&limit=1", ADMIN)
    assert [e["target"] for e in page["entries"]] == ["res-b"] and page["next_cursor"] is None


async def test_charge_point_keys_and_id_tags_are_recorded(fed: Fed) -> None:
    _, base = fed
    key_url = f"{base}/api/v1/devices/cp-9/ocpp-key"
    status, issued = await call("POST", key_url, ADMIN)
    assert status == 201
    assert (await call("DELETE", key_url, ADMIN))[0] == 204
    tag_url = f"{base}/api/v1/ocpp/id-tags/TAG-1"
    assert (await call("PUT", tag_url, ADMIN, {"status": "Blocked"}))[0] == 200
    assert (await call("DELETE", tag_url, ADMIN))[0] == 204
    assert (await call("DELETE", tag_url, ADMIN))[0] == 404  # nothing removed, nothing recorded

    _, body = await call("GET", f"{base}/api/v1/audit?limit=4", ADMIN)
    got = [(e["action"], e["target"], e["actor"]) for e in body["entries"]]
    assert got == [
        ("id_tag_removed", "TAG-1", "ops"),
        ("id_tag_set", "TAG-1", "ops"),
        ("ocpp_key_revoked", "cp-9", "ops"),
        ("ocpp_key_issued", "cp-9", "ops"),
    ]
    assert body["entries"][1]["detail"]["status"] == "Blocked"
    assert issued["key"] not in str(body)  # the key itself is never recorded
