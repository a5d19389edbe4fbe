"""Every endpoint of the progress API against the running service."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jsonschema
import pytest

from ingest.api import OPENAPI
from ingest.service import Service
from ingest.sources.connections import ConnectionRegistry
from tests.indicators.plant import ADMIN, READ

Fed = tuple[Service, str]


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or READ) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r


async def test_indicators_listing_per_region(fed: Fed) -> None:
    _, base = fed
    status, body, _ = await get(f"{base}/api/v1/indicators")
    assert status == 200 and body["region"] == "520000"
    by_key = {i["key"]: i for i in body["indicators"]}
    assert len(by_key) == 9
    chargers = by_key["smart_chargers"]
    assert chargers["value"] == 3
    assert chargers["targets"] == {"2022": 32000, "2024": 40000}
    assert chargers["stretch"] == {"2022": False, "2024": True}
    assert chargers["progress"]["2024"] == pytest.approx(3 / 40000)
    assert chargers["status"] == "behind"  # the plan period is over
    assert chargers["name_zh"] == "智能充电基础设施"
    pue = by_key["dc_average_pue"]
    assert pue["direction"] == "below" and pue["interim"] is True
    assert pue["progress"]["2024"] == pytest.approx(1.2 / (2150 / 1520))
    assert pue["targets"]["2022"] is None
    status, body, _ = await get(f"{base}/api/v1/indicators?region=guian")
    by_key = {i["key"]: i for i in body["indicators"]}
    assert by_key["dc_standard_racks"]["value"] == 1500
    assert by_key["dc_standard_racks"]["targets"] == {"2022": None, "2024": None}  # provincial targets
    assert by_key["dc_standard_racks"]["status"] == "no_target"
    assert by_key["dc_rack_utilization"]["targets"]["2024"] == 65  # a ratio applies everywhere


async def test_etag_and_csv(fed: Fed) -> None:
    _, base = fed
    status, _, r = await get(f"{base}/api/v1/indicators?region=520100")
    tag = r.headers["ETag"]
    status, _, r = await get(f"{base}/api/v1/indicators?region=520100", {**READ, "If-None-Match": tag})
    assert status == 304
    status, _, r = await get(f"{base}/api/v1/indicators/smart_chargers", {**READ, "If-None-Match": tag})
    assert status == 200 and r.headers["ETag"] != tag
    status, text, r = await get(f"{base}/api/v1/indicators?format=csv&region=unknown")
    assert status == 200 and r.content_type == "text/csv" and "ETag" in r.headers
    rows = {row["key"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows["smart_chargers"]["value"] == "1.0" and rows["smart_chargers"]["region"] == "unknown"
    assert set(rows) == {"reservoir_stations", "reservoir_automation_coverage", "overhead_line_terminals",
                         "smart_chargers", "dc_standard_racks", "dc_rack_utilization", "dc_average_pue",
                         "dc_demo_pue", "iot_connections"}  # fmt: skip


async def test_one_indicator_and_history(fed: Fed) -> None:
    svc, base = fed
    status, body, _ = await get(f"{base}/api/v1/indicators/reservoir_stations?region=520500")
    assert status == 200 and body["value"] == 1 and body["region"] == "520500"
    assert (await get(f"{base}/api/v1/indicators/nope"))[0] == 404
    await svc.rollup.run_once(svc.pool, datetime.now(UTC) + timedelta(seconds=1))
    status, body, _ = await get(f"{base}/api/v1/indicators/smart_chargers/history?step=1d")
    assert status == 200 and body["step_s"] == 86400
    assert [p["value"] for p in body["points"]] == [3.0]  # two snapshots in one day: the last
    status, body, _ = await get(f"{base}/api/v1/indicators/smart_chargers/history?step=1m")
    assert status == 400 and body["error"]["parameter"] == "step"  # 30 days by the minute: too many
    frm = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    status, body, _ = await get(f"{base}/api/v1/indicators/smart_chargers/history?from={frm}&to={frm}")
    assert status == 200 and body["points"] == []


async def test_regions_and_devices(fed: Fed) -> None:
    _, base = fed
    status, body, _ = await get(f"{base}/api/v1/regions")
    assert [r["key"] for r in body["regions"]][:2] == ["520000", "520100"]
    assert body["regions"][-1]["key"] == "unknown" and len(body["regions"]) == 12
    status, body, _ = await get(f"{base}/api/v1/devices?class=charger&region=520100")
    assert [d["device_id"] for d in body["devices"]] == ["ch-1", "ch-2"]
    status, body, _ = await get(f"{base}/api/v1/devices?region=unknown")
    assert [d["device_id"] for d in body["devices"]] == ["ch-3"]
    status, body, _ = await get(f"{base}/api/v1/devices?online=false")
    assert [d["device_id"] for d in body["devices"]] == ["res-c"]  # provisioned, never reported
    seen, cursor = [], ""
    while True:
        status, body, _ = await get(f"{base}/api/v1/devices?limit=3{cursor}")
        seen += [d["device_id"] for d in body["devices"]]
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert len(seen) == 11 and seen == sorted(seen)
    status, dev, _ = await get(f"{base}/api/v1/devices/res-a")
    assert dev["region"] == "520500" and dev["meta"]["region"] == "520100"  # provisioned wins
    assert dev["attributes"] == {"flood_limit_level_m": 1052.5} and dev["built"] and dev["online"]
    assert (await get(f"{base}/api/v1/devices/nope"))[0] == 404
    status, body, _ = await get(f"{base}/api/v1/devices/dc-1/readings?metric=it_energy_kwh")
    assert status == 200 and [r["values"]["it_energy_kwh"] for r in body["readings"]] == [5000, 6000, 6400]
    assert body["units"] == {"it_energy_kwh": "kWh"}


BAD = [
    ("/api/v1/indicators?region=999999", "region"),
    ("/api/v1/indicators?format=xml", "format"),
    ("/api/v1/indicators/smart_chargers/history?step=5x", "step"),
    ("/api/v1/indicators/smart_chargers/history?step=1", "step"),
    ("/api/v1/indicators/smart_chargers/history?from=yesterday", "from"),
    ("/api/v1/indicators/smart_chargers/history?to=2024-01-01T00:00", "to"),
    ("/api/v1/indicators/smart_chargers/history?from=2025-01-01T00:00Z&to=2024-01-01T00:00Z", "from"),
    ("/api/v1/devices?class=toaster", "class"),
    ("/api/v1/devices?online=maybe", "online"),
    ("/api/v1/devices?limit=0", "limit"),
    ("/api/v1/devices?cursor=%%%", "cursor"),
    ("/api/v1/devices/dc-1/readings?metric=level_m", "metric"),
    ("/api/v1/devices/dc-1/readings?limit=abc", "limit"),
]


async def test_bad_parameters_name_the_parameter(fed: Fed) -> None:
    _, base = fed
    for path, parameter in BAD:
        status, body, _ = await get(base + path)
        assert status == 400, (path, body)
        assert body["error"]["parameter"] == parameter and parameter in body["error"]["message"]


async def test_auth(fed: Fed) -> None:
    _, base = fed
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
            async with http.get(f"{base}/api/v1/indicators", headers=headers) as r:
                assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.put(f"{base}/api/v1/devices/x", json={"class": "charger"}, headers=READ) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
        async with http.post(f"{base}/api/v1/rollup", headers=READ) as r:
            assert r.status == 403
        async with http.get(f"{base}/api/v1/openapi.json") as r:
            assert r.status == 200 and (await r.json())["openapi"] == "3.1.0"


async def test_provisioning(fed: Fed) -> None:
    svc, base = fed
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        record = {
            "class": "charger",
            "region": "522700",
            "attributes": {"rated_power_kw": 120, "connectors": 2},
        }
        async with http.put(f"{base}/api/v1/devices/ch-9", json=record) as r:
            body = await r.json()
            assert r.status == 200 and body["provisioned"] and not body["built"]
            assert body["attributes"] == {"rated_power_kw": 120.0, "connectors": 2}
        async with http.put(f"{base}/api/v1/devices/ch-9", json={"class": "charger", "site": "都匀"}) as r:
            body = await r.json()
            assert (
                body["site"] == "都匀"
                and body["region"] == "522700"
                and body["attributes"]["connectors"] == 2
            )
        async with http.put(f"{base}/api/v1/devices/ch-9", json={"class": "reservoir"}) as r:
            assert r.status == 409
        bad = {"class": "charger", "attributes": {"rated_power_kw": 5000}}
        async with http.put(f"{base}/api/v1/devices/ch-9", json=bad) as r:
            err = (await r.json())["error"]
            assert r.status == 400 and err["parameter"] == "body.attributes.rated_power_kw"
        async with http.put(
            f"{base}/api/v1/devices/ch-9", json={"class": "charger", "region": "520000"}
        ) as r:
            assert r.status == 400 and (await r.json())["error"]["parameter"] == "body.region"
        bulk = [{"device_id": f"pl-x{i}", "class": "power_line", "region": "520200",
                 "attributes": {"design_ice_mm": 20}} for i in range(3)]  # fmt: skip
        async with http.post(f"{base}/api/v1/devices", json=bulk) as r:
            assert r.status == 200 and (await r.json()) == {"provisioned": 3}
        csv_bad = "device_id,class,design_ice_mm\npl-y,power_line,20\npl-z,power_line,lots\n"
        async with http.post(
            f"{base}/api/v1/devices", data=csv_bad, headers={"Content-Type": "text/csv"}
        ) as r:
            err = (await r.json())["error"]
            assert r.status == 400 and err["parameter"] == "csv line 3.attributes.design_ice_mm"
        async with http.post(f"{base}/api/v1/devices", data="x", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415
        async with http.delete(f"{base}/api/v1/devices/nope") as r:
            assert r.status == 404
        async with http.post(f"{base}/api/v1/rollup") as r:
            assert r.status == 200
    res = svc.rollup.latest
    assert res is not None and res.fleet[("power_line", "520200")] == (0, 0)  # provisioned, not built
    _status, body, _ = await get(f"{base}/api/v1/devices?region=520200&class=power_line")
    assert [d["device_id"] for d in body["devices"]] == ["pl-x0", "pl-x1", "pl-x2"]


async def test_metrics_pass_promtool_and_are_bounded(fed: Fed) -> None:
    _, base = fed
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as r:
        text = await r.text()
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup installs Debian's prometheus package"
    out = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text.encode(), capture_output=True
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    lines = [x for x in text.splitlines() if not x.startswith("#")]
    assert 'plan_indicator_value{indicator="smart_chargers",region="520000"} 3.0' in lines
    assert 'plan_indicator_target{indicator="smart_chargers",region="520000",year="2024"} 40000.0' in lines
    assert 'fleet_devices_online{class="charger",region="unknown"} 1.0' in lines
    assert 'plan_indicator_interim{indicator="dc_average_pue",region="guian"} 1.0' in lines
    assert any(x.startswith("plan_indicator_progress_ratio{") for x in lines)
    assert 'fleet_alarm_devices{alarm="faulted",class="charger",region="520100"} 1.0' in lines
    last = next(x for x in lines if x.startswith("plan_rollup_last_success_timestamp_seconds"))
    assert abs(float(last.split()[1]) - time.time()) < 60
    label_names = {
        pair.split("=")[0] for x in lines if "{" in x for pair in x.split("{", 1)[1].split("}")[0].split(",")
    }
    assert not any("device" in name for name in label_names)  # no per-device labels


async def test_all_regions_in_one_call(fed: Fed) -> None:
    _, base = fed
    status, body, _ = await get(f"{base}/api/v1/indicators?region=all")
    assert status == 200 and body["region"] == "all"
    regions = [r["region"] for r in body["regions"]]
    assert regions[0] == "520000" and regions[-1] == "unknown" and len(regions) == 12
    one = (await get(f"{base}/api/v1/indicators?region=guian"))[1]
    guian = next(r for r in body["regions"] if r["region"] == "guian")
    assert guian["indicators"] == one["indicators"]
    status, text, _ = await get(f"{base}/api/v1/indicators?region=all&format=csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 12 * 9 and {r["region"] for r in rows} == set(regions)
    assert all(r["as_of"] == body["as_of"] for r in rows)


async def test_connections_name_their_worker_and_whether_it_is_stale(fed: Fed) -> None:
    svc, base = fed
    t = datetime(2026, 7, 1, 8, tzinfo=UTC)
    live = ConnectionRegistry(svc.pool, "w-live", "ocpp")
    live.connected("CP-1", "10.0.0.1:5000", t)
    assert await live.flush()
    silent = ConnectionRegistry(svc.pool, "w-silent", "sl651")
    silent.connected("0012345678", "10.0.0.2:6000", t)
    assert await silent.flush()
    await svc.pool.execute(
        "UPDATE edge_workers SET seen_at = now() - interval '45 s' WHERE worker = 'w-silent'"
    )
    status, body, _ = await get(f"{base}/api/v1/connections")
    assert status == 200 and body["count"] == 2
    schema = json.loads(OPENAPI.read_text())["components"]["schemas"]["Connection"]
    for item in body["items"]:
        jsonschema.validate(item, schema, format_checker=jsonschema.FormatChecker())
    got = {i["device_id"]: (i["transport"], i["worker"], i["stale"]) for i in body["items"]}
    assert got == {"CP-1": ("ocpp", "w-live", False), "0012345678": ("sl651", "w-silent", True)}
    assert body["items"][1]["connected_since"] == t.isoformat()
    status, body, _ = await get(f"{base}/api/v1/connections?transport=sl651")
    assert [i["device_id"] for i in body["items"]] == ["0012345678"]
