"""Dead letters over the API and the command line, against the running service:
listing and filters, paging, one letter (raw bytes for admin only), a device's latest
refusal, replay after the reason is gone (stored once however often it runs), and
the retention."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from ingest import cli, deadletters
from ingest.service import Service
from tests.indicators.plant import ADMIN, READ, make_cfg, telemetry
from tests.mqttclient import publish
from tests.services import Broker, running

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=500)  # beyond the default 400-day horizon
SENT = [
    telemetry("reservoir", "res-1", OLD, {"level_m": 1000.0}),
    telemetry("reservoir", "res-1", OLD + timedelta(hours=1), {"level_m": 1000.5}),
    telemetry("reservoir", "res-2", NOW, {"rain_mm": 1.0}),
    ("gz/v1/charger/cp-1", b"{}"),
    ("gz/v1/power_line/pl-1/telemetry", b"\xff\xfenot json"),
    telemetry("reservoir", "res-1", NOW, {"level_m": 999.0}),  # good
]
Fed = tuple[Service, str]


@pytest.fixture
async def refused(mqtt_broker: Broker, db_url: str, tmp_path: Path) -> AsyncIterator[Fed]:
    async with running(make_cfg(mqtt_broker, db_url, tmp_path)) as svc:
        for msg in SENT:  # one by one: received_at follows the order sent
            await asyncio.to_thread(publish, mqtt_broker.port, [msg])
        await asyncio.wait_for(svc.pipeline.wait_committed(len(SENT)), 20)
        yield svc, f"http://127.0.0.1:{svc.http_port}"


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers or READ) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def test_list_filter_and_page(refused: Fed) -> None:
    _, base = refused
    status, body = await call("GET", f"{base}/api/v1/dead-letters")
    assert status == 200 and body["next_cursor"] is None
    letters = body["dead_letters"]
    assert [d["reason"] for d in letters] == ["bad_json", "bad_topic", "unknown_metric", "too_old", "too_old"]
    assert letters[0]["class"] == "power_line" and letters[0]["device_id"] == "pl-1"
    assert "did you mean rain_1h_mm" in letters[2]["detail"]
    assert "payload_base64" not in letters[0]
    status, body = await call("GET", f"{base}/api/v1/dead-letters?reason=too_old&device_id=res-1")
    assert [d["device_id"] for d in body["dead_letters"]] == ["res-1", "res-1"]
    status, body = await call("GET", f"{base}/api/v1/dead-letters?class=charger")
    assert [d["topic"] for d in body["dead_letters"]] == ["gz/v1/charger/cp-1"]
    status, body = await call("GET", f"{base}/api/v1/dead-letters?topic_prefix=gz/v1/reservoir/res-2/")
    assert [d["reason"] for d in body["dead_letters"]] == ["unknown_metric"]
    since = letters[1]["received_at"]
    status, body = await call("GET", f"{base}/api/v1/dead-letters?from={since}")
    assert len(body["dead_letters"]) >= 2
    seen, url = [], f"{base}/api/v1/dead-letters?limit=2"
    while True:
        status, body = await call("GET", url)
        seen += [d["id"] for d in body["dead_letters"]]
        if body["next_cursor"] is None:
            break
        url = f"{base}/api/v1/dead-letters?limit=2&cursor={body['next_cursor']}"
    assert seen == [d["id"] for d in letters]
    for bad in ("reason=nope", "class=toaster", "cursor=%21%21", "replayed=maybe", "limit=0", "device_id="):
        status, body = await call("GET", f"{base}/api/v1/dead-letters?{bad}")
        assert status == 400, bad


async def test_one_letter_raw_bytes_need_admin(refused: Fed) -> None:
    _, base = refused
    _, body = await call("GET", f"{base}/api/v1/dead-letters?reason=bad_json")
    one = body["dead_letters"][0]["id"]
    status, body = await call("GET", f"{base}/api/v1/dead-letters/{one}")
    assert status == 200 and body["topic"] == "gz/v1/power_line/pl-1/telemetry" and body["size"] == 10
    assert "payload_base64" not in body
    status, body = await call("GET", f"{base}/api/v1/dead-letters/{one}", ADMIN)
    assert base64.b64decode(body["payload_base64"]) == b"\xff\xfenot json"
    assert body["payload_text"] is None  # not UTF-8
    _, body = await call("GET", f"{base}/api/v1/dead-letters?reason=bad_topic")
    status, body = await call("GET", f"{base}/api/v1/dead-letters/{body['dead_letters'][0]['id']}", ADMIN)
    assert body["payload_text"] == "{}"
    assert (await call("GET", f"{base}/api/v1/dead-letters/999999"))[0] == 404
    assert (await call("GET", f"{base}/api/v1/dead-letters/x1"))[0] == 404


async def test_device_carries_its_latest_refusal(refused: Fed) -> None:
    _, base = refused
    status, body = await call("GET", f"{base}/api/v1/devices/res-1")
    assert status == 200
    assert body["last_refusal"]["reason"] == "too_old"
    assert "400-day horizon" in body["last_refusal"]["detail"]


async def test_replay_over_the_api_needs_admin_and_keeps_what_still_fails(refused: Fed) -> None:
    svc, base = refused
    assert (await call("POST", f"{base}/api/v1/dead-letters/replay"))[0] == 403
    status, body = await call("POST", f"{base}/api/v1/dead-letters/replay", ADMIN)
    assert status == 200
    failing = {"bad_json": 1, "bad_topic": 1, "too_old": 2, "unknown_metric": 1}
    assert body == {"examined": 5, "stored": 0, "still_failing": failing}
    async with svc.pool.acquire() as conn:
        entry = await conn.fetchrow("SELECT actor, action, detail::text FROM audit_log")
    assert entry["actor"] == "ops" and entry["action"] == "replay"
    assert orjson.loads(entry["detail"])["still_failing"]["too_old"] == 2


async def test_replay_after_the_horizon_is_widened_stores_once(
    refused: Fed, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INGEST_DATABASE_URL", db_url)
    monkeypatch.setenv("INGEST_ACCEPT_HORIZON_DAYS", "1000")
    argv = ["dead-letters", "replay", "--device", "res-1"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert capsys.readouterr().out.strip() == "examined 2, stored 2"
    assert await asyncio.to_thread(cli.main, [*argv[:2]]) == 0  # every letter; res-1's are done
    assert capsys.readouterr().out.strip() == (
        "examined 3, stored 0, still refused: 1 bad_json, 1 bad_topic, 1 unknown_metric"
    )
    conn = await asyncpg.connect(db_url)
    try:
        # replay once more, the marks cleared: the readings' keys keep them stored once
        await conn.execute("UPDATE dead_letters SET replayed_at = NULL")
        assert await asyncio.to_thread(cli.main, argv) == 0
        rows = await conn.fetch(
            "SELECT ts, level_m FROM readings_reservoir WHERE device_id = 'res-1' ORDER BY ts"
        )
        device = await conn.fetchrow("SELECT first_seen, last_ts FROM devices WHERE device_id = 'res-1'")
        audit = await conn.fetch("SELECT actor FROM audit_log WHERE action = 'replay'")
    finally:
        await conn.close()
    assert [(r["ts"], r["level_m"]) for r in rows] == [
        (OLD, 1000.0), (OLD + timedelta(hours=1), 1000.5), (NOW, 999.0)
    ]  # fmt: skip
    assert device["last_ts"] == NOW  # the registry took the replayed readings in
    assert len(audit) == 3 and all(a["actor"].startswith("cli") for a in audit)
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["dead-letters", "list", "--replayed", "yes"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("[replayed]") == 2 and "too_old" in listed


async def test_cli_list_and_show(refused: Fed, db_url: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("INGEST_DATABASE_URL", db_url)
    assert await asyncio.to_thread(cli.main, ["dead-letters", "list", "--format", "json"]) == 0
    letters = orjson.loads(capsys.readouterr().out)
    assert [d["reason"] for d in letters][:2] == ["bad_json", "bad_topic"]
    assert await asyncio.to_thread(cli.main, ["dead-letters", "list", "--reason", "unknown_metric"]) == 0
    out = capsys.readouterr().out
    assert "res-2" in out and "did you mean" in out and "bad_json" not in out
    assert await asyncio.to_thread(cli.main, ["dead-letters", "show", str(letters[0]["id"])]) == 0
    out = capsys.readouterr().out
    assert "not UTF-8" in out and "ff fe 6e 6f" in out
    assert await asyncio.to_thread(cli.main, ["dead-letters", "show", "999999"]) == 1
    assert "no dead letter 999999" in capsys.readouterr().err


async def test_retention_deletes_old_letters(db_url: str) -> None:
    from ingest.migrate import migrate

    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        old = NOW - timedelta(days=40)
        await conn.executemany(
            "INSERT INTO dead_letters (received_at, topic, payload, reason, detail) "
            "VALUES ($1, 't', $2, 'x', '')",
            [(old, b"1"), (NOW, b"2")],
        )
        assert await deadletters.prune(conn, NOW - timedelta(days=30)) == 1
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 1
    finally:
        await conn.close()
