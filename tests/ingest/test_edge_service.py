"""The edge endpoints in the real service against the real PostgreSQL: the `ocpp`
package's charge points (several at once) and a raw-socket SL651 RTU. Rows,
registry, dead letters; answers only after commit (the database held by a lock in
another connection, none arrives); replays stored once; wrong keys refused."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from adapters.sl651 import crc16_modbus
from ingest.config import Config, DatabaseConfig, HttpConfig, MqttConfig, OcppConfig, Sl651Config, Token
from ingest.service import Service
from tests.ingest.test_ocpp_source import charge_point
from tests.ingest.test_sl651_link import OBS, STATION, packets, report
from tests.services import Broker, running

ADMIN = "admin-token-for-tests"
T0 = "2026-07-01T08:00:00Z"


@asynccontextmanager
async def service(db_url: str, mqtt_broker: Broker) -> AsyncIterator[Service]:
    cfg = Config(
        mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{mqtt_broker.port}"),
        database=DatabaseConfig(url=db_url),
        http=HttpConfig(port=0, tokens=(Token("ops", "admin", hashlib.sha256(ADMIN.encode()).hexdigest()),)),
        ocpp=OcppConfig(enabled=True, port=0),
        sl651=Sl651Config(enabled=True, port=0),
    )
    async with running(cfg) as svc:
        assert svc.ocpp is not None and svc.sl651 is not None
        await asyncio.wait_for(svc.ocpp.listening.wait(), 10)
        await asyncio.wait_for(svc.sl651.listening.wait(), 10)
        yield svc


async def provision(svc: Service, cp_id: str) -> str:
    url = f"http://127.0.0.1:{svc.http_port}/api/v1/devices/{cp_id}/ocpp-key"
    async with aiohttp.ClientSession() as s, s.post(url, headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 201
        key: str = (await r.json())["key"]
        return key


def meter(wh: float, ts: str = T0, **extra: str) -> list[dict[str, Any]]:
    sample = {"value": str(wh), "measurand": "Energy.Active.Import.Register", **extra}
    return [{"timestamp": ts, "sampled_value": [sample]}]


async def held_by_lock(pool: Any, db_url: str) -> None:
    """Until a backend of this database waits for a lock (the writer, blocked)."""
    name = db_url.rpartition("/")[2]
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
    while not await pool.fetchval(sql, name):  # noqa: ASYNC110 - PostgreSQL's state, no event to await
        await asyncio.sleep(0.02)


async def test_charge_points_rows_registry_dead_letters_and_replays(db_url: str, mqtt_broker: Broker) -> None:
    async with service(db_url, mqtt_broker) as svc:
        keys = {f"CP-{n}": await provision(svc, f"CP-{n}") for n in range(3)}

        async def session(cp_id: str) -> None:
            async with charge_point(svc.ocpp, cp_id, keys[cp_id]) as cp:
                boot = call.BootNotification("AC-7", "StarCharge", charge_point_serial_number="SN1",
                                             firmware_version="1.2")  # fmt: skip
                assert (await cp.call(boot)).status == "Accepted"
                await cp.call(call.StatusNotification(1, "NoError", "Charging", timestamp=T0))
                for _ in range(2):  # the second is a replay after an outage: stored once
                    await cp.call(call.MeterValues(1, meter(1000, phase="L1", unit="Wh")))
                start = await cp.call(call.StartTransaction(1, "TAG", 1000, T0))
                data = meter(1500, "2026-07-01T08:30:00Z")
                for _ in range(2):
                    stop = call.StopTransaction(2000, "2026-07-01T09:00:00Z", start.transaction_id,
                                                transaction_data=data)  # fmt: skip
                    await cp.call(stop)

        await asyncio.gather(*(session(cp) for cp in keys))
        async with svc.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT device_id, point, ts, energy_wh FROM readings_charger ORDER BY device_id, ts"
            )
            assert len(rows) == 3 * 2  # per charge point: the MeterValues and the stop's meterStop
            assert {(r["point"], r["energy_wh"]) for r in rows} == {("1", 1000.0), ("1", 2000.0)}
            states = await conn.fetchval("SELECT count(*) FROM state_events WHERE name = 'status'")
            assert states == 3
            meta = await conn.fetchval("SELECT meta FROM devices WHERE device_id = 'CP-0'")
            assert orjson.loads(meta) | {} == {
                "vendor": "StarCharge", "model": "AC-7", "serial_number": "SN1", "firmware_version": "1.2",
            }  # fmt: skip
            assert await conn.fetchval("SELECT count(*) FROM ocpp_transactions WHERE meter_stop = 2000") == 3

        # A bad frame is a dead letter, its CallError follows, the connection stays up.
        assert svc.ocpp is not None
        url = f"ws://CP-0:{keys['CP-0']}@127.0.0.1:{svc.ocpp.port}/ocpp/CP-0"
        async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            await ws.send('[2, "b1", "StatusNotification", {"connectorId": 1, "status": "Napping"}]')
            err = orjson.loads(await ws.recv())
            assert err[:3] == [4, "b1", "OccurenceConstraintViolation"]
            await ws.send('[2, "h1", "Heartbeat", {}]')
            assert orjson.loads(await ws.recv())[:2] == [3, "h1"]
        dead = await svc.pool.fetch("SELECT topic, reason, detail FROM dead_letters")
        assert [(d["topic"], d["reason"]) for d in dead] == [("gz/v1/charger/CP-0/ocpp", "schema")]
        assert dead[0]["detail"].startswith("OccurenceConstraintViolation")

        # Wrong or missing keys are refused at the upgrade.
        for auth in ("", "CP-0:wrong@", f"CP-1:{keys['CP-0']}@"):
            try:
                url = f"ws://{auth}127.0.0.1:{svc.ocpp.port}/ocpp/CP-0"
                async with connect(url, subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
                    raise AssertionError("accepted")
            except InvalidStatus as exc:
                assert exc.response.status_code == 401


async def test_no_answer_before_the_commit(db_url: str, mqtt_broker: Broker) -> None:
    async with service(db_url, mqtt_broker) as svc:
        key = await provision(svc, "CP-9")
        assert svc.sl651 is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.sl651.port)
        async with charge_point(svc.ocpp, "CP-9", key) as cp:
            await cp.call(call.Heartbeat())  # the registry row exists: the held write is the readings'
            writer.write(report(serial=1))
            await reader.readexactly(25)
            hold = await asyncpg.connect(db_url)
            tx = hold.transaction()
            await tx.start()
            await hold.execute("LOCK TABLE readings_charger, readings_reservoir IN ACCESS EXCLUSIVE MODE")
            answer = asyncio.create_task(cp.call(call.MeterValues(1, meter(42))))
            writer.write(report(serial=2, level=1041.0, observed=OBS + timedelta(hours=1)))
            ack = asyncio.create_task(reader.readexactly(25))
            await held_by_lock(svc.pool, db_url)
            await asyncio.sleep(0.3)  # time for an answer to arrive, were one sent before the commit
            assert not answer.done() and not ack.done()
            assert svc.pipeline.pending_messages >= 2
            await tx.rollback()
            await hold.close()
            assert await asyncio.wait_for(answer, 20) is not None
            assert (await asyncio.wait_for(ack, 20))[14:16] == (2).to_bytes(2, "big")
            assert await svc.pool.fetchval("SELECT count(*) FROM readings_charger") == 1
            assert await svc.pool.fetchval("SELECT count(*) FROM readings_reservoir") == 2
        writer.close()


async def test_an_rtu_rows_once_bad_frames_dead_letters(db_url: str, mqtt_broker: Broker) -> None:
    async with service(db_url, mqtt_broker) as svc:
        assert svc.sl651 is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.sl651.port)
        bad = bytearray(report(serial=5))
        bad[-1] ^= 0xFF
        single = report(serial=6, level=1033.0, observed=OBS + timedelta(hours=1))
        stream = b"\x00garbage" + report(serial=4) + report(serial=4) + bytes(bad)
        stream += b"".join(packets(single, [12, len(single) - 29]))
        writer.write(stream)
        acks = [await asyncio.wait_for(reader.readexactly(25), 20) for _ in range(3)]
        assert [int.from_bytes(a[14:16], "big") for a in acks] == [4, 4, 6]  # none for the bad CRC
        for a in acks:
            assert crc16_modbus(a[:-2]) == int.from_bytes(a[-2:], "big")
        rows = await svc.pool.fetch("SELECT device_id, level_m FROM readings_reservoir ORDER BY level_m")
        assert [(r["device_id"], r["level_m"]) for r in rows] == [(STATION, 1032.5), (STATION, 1033.0)]
        dead = await svc.pool.fetch("SELECT topic, reason FROM dead_letters")
        assert [tuple(d) for d in dead] == [(f"gz/v1/reservoir/{STATION}/sl651", "bad_checksum")]
        cls = await svc.pool.fetchval("SELECT class FROM devices WHERE device_id = $1", STATION)
        assert cls == "reservoir"
        writer.close()
