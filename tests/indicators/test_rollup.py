"""The rollup end to end: provision a fleet, feed it through the real pipeline over
Mosquitto into PostgreSQL, roll up, and check exact figures per region."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from ingest.indicators import energy
from tests.indicators.plant import ADMIN, PROVISION_CSV, fleet_messages, make_cfg
from tests.mqttclient import publish
from tests.services import Broker, running


async def test_rollup_exact_per_region(mqtt_broker: Broker, db_url: str, tmp_path: Path) -> None:
    async with running(make_cfg(mqtt_broker, db_url, tmp_path)) as svc:
        base = f"http://127.0.0.1:{svc.http_port}/api/v1"
        async with aiohttp.ClientSession() as http:
            r = await http.post(f"{base}/devices", data=PROVISION_CSV.encode(),
                                headers={**ADMIN, "Content-Type": "text/csv"})  # fmt: skip
            assert r.status == 200, await r.text()
            msgs = fleet_messages(datetime.now(UTC))
            msgs.append(("gz/v1/charger/ch-2/status", b"offline"))  # its last will: gone offline
            await asyncio.to_thread(publish, mqtt_broker.port, msgs)
            await asyncio.wait_for(svc.pipeline.wait_committed(len(msgs)), 20)

            res = await svc.rollup.run_once(svc.pool)
            v = {k: f.value for k, f in res.figures.items()}

            # Reservoirs: res-a and res-d automated; res-b reports no rain; res-c never reported.
            assert v[("reservoir_stations", "520000")] == 2
            assert v[("reservoir_stations", "520500")] == 1
            assert v[("reservoir_stations", "520100")] == 1  # res-d, from its hint
            assert v[("reservoir_automation_coverage", "520000")] == pytest.approx(100 / 3)
            assert v[("reservoir_automation_coverage", "520500")] == pytest.approx(50.0)
            assert v[("reservoir_automation_coverage", "520100")] == 0.0  # res-c provisioned, silent
            assert res.fleet[("reservoir", "520500")] == (2, 2)
            assert res.fleet[("reservoir", "520100")] == (1, 1)  # res-a hinted Guiyang: provisioning wins
            # pl-1 hinted Liupanshui, but was provisioned in Bijie.
            assert v[("overhead_line_terminals", "520500")] == 1
            assert v[("overhead_line_terminals", "520200")] == 0
            # Chargers: ch-3 has no region; ch-2 went offline.
            assert v[("smart_chargers", "520000")] == 3
            assert v[("smart_chargers", "520100")] == 2
            assert v[("smart_chargers", "unknown")] == 1
            assert res.fleet[("charger", "520100")] == (2, 1)
            assert res.fleet[("charger", "unknown")] == (1, 1)
            # Every reported device is online except ch-2.
            assert v[("iot_connections", "520000")] == 9
            # Racks: dc-2's provisioned racks_built (500) wins over its reading (9999).
            assert v[("dc_standard_racks", "guian")] == 1500
            assert v[("dc_rack_utilization", "guian")] == pytest.approx(100 * 950 / 1500)
            assert v[("dc_standard_racks", "520100")] == 0

            # PUE, category 1: dc-1 2000/1400 plus dc-2 (100/80 + 50/40, the reset skipped).
            pue = res.figures[("dc_average_pue", "guian")]
            assert pue.value == pytest.approx((2000 + 150) / (1400 + 120))
            assert pue.value != pytest.approx(energy.mean_of_ratios([(1300, 1000), (700, 400)]))
            assert pue.inputs["resets"] == 1
            assert pue.inputs["other_categories"] == [2]
            assert pue.interim  # a one-day window, and three hours of data
            assert res.figures[("dc_demo_pue", "guian")].value == pytest.approx(150 / 120)
            assert v[("dc_average_pue", "520000")] == pytest.approx(2150 / 1520)
            assert v[("dc_average_pue", "520100")] is None

            # Devices in alarm: bounded counts, every pair present.
            assert len(res.alarms) == 6 * 12
            assert sum(res.alarms.values()) == 2 * 4, {k: n for k, n in res.alarms.items() if n}
            assert res.alarms[("above_flood_limit", "reservoir", "520500")] == 1  # res-b
            assert res.alarms[("above_flood_limit", "reservoir", "520000")] == 1
            assert res.alarms[("ice_50pct_design", "power_line", "520500")] == 1  # pl-1
            assert res.alarms[("ice_80pct_design", "power_line", "520500")] == 1
            assert res.alarms[("faulted", "charger", "520100")] == 1  # ch-1
            assert res.alarms[("conductor_temp_70c", "power_line", "520000")] == 0

            # Decommissioned devices stop counting.
            r = await http.delete(f"{base}/devices/res-b", headers=ADMIN)
            assert r.status == 204
            res = await svc.rollup.run_once(svc.pool)
            assert res.figures[("reservoir_automation_coverage", "520500")].value == 100.0
            assert res.fleet[("reservoir", "520500")] == (1, 1)
