"""The OCPP central system as a source, with real charge points (the `ocpp` package's
ChargePoint over websockets) and the real PostgreSQL for keys, transactions and the
connection registry; a recording intake stands in for the pipeline, so what is
answered is exactly what the intake handed back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from ocpp.v16 import ChargePoint, call
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ingest.config import OcppConfig
from ingest.migrate import migrate
from ingest.sources.ocpp import OcppSource
from ingest.sources.ocpp_store import OcppStore, new_key
from tests.ingest.intake import RecordingIntake

NOW = "2026-07-01T08:00:00Z"


@asynccontextmanager
async def central(db_url: str, **settings: Any) -> AsyncIterator[tuple[OcppSource, RecordingIntake, Any]]:
    conn = await asyncpg.connect(db_url)
    await migrate(conn)
    await conn.close()
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    intake = RecordingIntake()
    cfg = OcppConfig(enabled=True, port=0, **{"auth": "open", **settings})
    src = OcppSource(cfg, "gz", intake, OcppStore(pool, "w1"), CollectorRegistry())
    task = asyncio.create_task(src.run())
    await asyncio.wait_for(src.listening.wait(), 5)
    try:
        yield src, intake, pool
    finally:
        await src.close()
        await asyncio.wait_for(task, 5)
        await pool.close()


@asynccontextmanager
async def charge_point(src: OcppSource, cp_id: str, key: str | None = None) -> AsyncIterator[ChargePoint]:
    auth = f"{cp_id}:{key}@" if key is not None else ""
    url = f"ws://{auth}127.0.0.1:{src.port}/ocpp/{cp_id}"
    async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        cp = ChargePoint(cp_id, ws, response_timeout=20)  # a commit can wait on a held lock
        runner = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            runner.cancel()


async def committing(intake: RecordingIntake) -> None:
    """Stand in for a pipeline that commits at once."""
    while True:
        await intake.wait(1)
        intake.commit()


def meter(wh: float, ts: str = NOW) -> list[dict[str, Any]]:
    sample = {"value": str(wh), "measurand": "Energy.Active.Import.Register"}
    return [{"timestamp": ts, "sampled_value": [sample]}]


async def test_several_charge_points_answered_after_commit(db_url: str) -> None:
    async with central(db_url) as (src, intake, pool):

        async def session(n: int) -> tuple[int, int]:
            async with charge_point(src, f"CP-{n}") as cp:
                boot = await cp.call(call.BootNotification("M", "V", charge_point_serial_number=f"S{n}"))
                assert boot.status == "Accepted" and boot.interval == 300
                await cp.call(call.StatusNotification(1, "NoError", "Charging", timestamp=NOW))
                await cp.call(call.MeterValues(1, meter(1000 + n)))
                hb = await cp.call(call.Heartbeat())
                assert hb.current_time.endswith("Z")
                start = await cp.call(call.StartTransaction(1, "TAG1", 1000, NOW))
                assert start.id_tag_info["status"] == "Accepted"
                stop = await cp.call(
                    call.StopTransaction(2000, "2026-07-01T09:00:00Z", start.transaction_id, id_tag="TAG1")
                )
                assert stop.id_tag_info["status"] == "Accepted"
                dt = await cp.call(call.DataTransfer("acme"))
                assert dt.status == "UnknownVendorId"
                return n, start.transaction_id

        committer = asyncio.create_task(committing(intake))
        results = await asyncio.gather(*(session(n) for n in range(5)))
        committer.cancel()
        ids = [t for _, t in results]
        assert len(set(ids)) == 5  # unique across charge points
        rows = await pool.fetch("SELECT * FROM ocpp_transactions ORDER BY transaction_id")
        assert [(r["meter_start"], r["meter_stop"]) for r in rows] == [(1000, 2000)] * 5


async def test_a_call_is_answered_only_when_its_commit_is_handed_back(db_url: str) -> None:
    async with central(db_url) as (src, intake, _), charge_point(src, "CP-1") as cp:
        reply = asyncio.create_task(cp.call(call.MeterValues(1, meter(5))))
        (held,) = await intake.wait(1)
        assert held.topic == "gz/v1/charger/CP-1/ocpp"
        assert orjson.loads(held.payload)[2] == "MeterValues"
        # The frame is in the intake and not committed: the charge point has no answer.
        await asyncio.sleep(0)
        assert not reply.done()
        intake.commit()
        assert await asyncio.wait_for(reply, 5) is not None


async def test_a_stop_of_a_known_transaction_stores_its_meter_at_the_connector(db_url: str) -> None:
    async with central(db_url) as (src, intake, _), charge_point(src, "CP-1") as cp:
        committer = asyncio.create_task(committing(intake))
        start = await cp.call(call.StartTransaction(2, "T", 100, NOW))
        committer.cancel()
        data = meter(150, "2026-07-01T08:30:00Z")
        stop = call.StopTransaction(200, "2026-07-01T09:00:00Z", start.transaction_id, transaction_data=data)
        reply = asyncio.create_task(cp.call(stop))
        held = await intake.wait(2)
        frames = [orjson.loads(h.payload) for h in held]
        assert [f[2] for f in frames] == ["StopTransaction", "MeterValues"]
        mv = frames[1][3]
        assert mv["connectorId"] == 2 and mv["meterValue"][-1]["sampledValue"][0]["value"] == "200"
        intake.commit()
        await asyncio.wait_for(reply, 5)


async def test_replays_and_unknown_transactions_are_answered_and_kept_once(db_url: str) -> None:
    async with central(db_url) as (src, intake, pool), charge_point(src, "CP-1") as cp:
        committer = asyncio.create_task(committing(intake))
        a = await cp.call(call.StartTransaction(1, "T", 100, NOW))
        b = await cp.call(call.StartTransaction(1, "T", 100, NOW))  # sent again after an outage
        assert a.transaction_id == b.transaction_id
        for _ in range(2):
            await cp.call(call.StopTransaction(300, "2026-07-01T09:00:00Z", a.transaction_id))
            await cp.call(call.StopTransaction(300, "2026-07-01T09:00:00Z", -1))
            await cp.call(call.StopTransaction(300, "2026-07-01T09:00:00Z", 999_999))
        committer.cancel()
        assert await pool.fetchval("SELECT count(*) FROM ocpp_transactions") == 1
        orphans = await pool.fetch("SELECT transaction_id FROM ocpp_orphan_stops ORDER BY 1")
        assert [r[0] for r in orphans] == [-1, 999_999]
    # A restarted central system (a new store on the same database) gives the same id.
    async with central(db_url) as (src, intake, _), charge_point(src, "CP-1") as cp:
        committer = asyncio.create_task(committing(intake))
        c = await cp.call(call.StartTransaction(1, "T", 100, NOW))
        d = await cp.call(call.StartTransaction(1, "T", 100, "2026-07-01T10:00:00Z"))
        committer.cancel()
        assert c.transaction_id == a.transaction_id and d.transaction_id != a.transaction_id


async def test_provisioned_id_tags(db_url: str) -> None:
    async with central(db_url, id_tags="provisioned") as (src, intake, pool), charge_point(src, "CP-1") as cp:
        await pool.execute(
            "INSERT INTO ocpp_id_tags (id_tag, status) VALUES ('GOOD', 'Accepted'), ('OLD', 'Blocked')"
        )
        committer = asyncio.create_task(committing(intake))
        got = [(await cp.call(call.Authorize(tag))).id_tag_info["status"] for tag in ("GOOD", "OLD", "NEW")]
        committer.cancel()
        assert got == ["Accepted", "Blocked", "Invalid"]


async def test_invalid_frames_get_the_call_error_after_their_dead_letter(db_url: str) -> None:
    async with (
        central(db_url) as (src, intake, _),
        connect(f"ws://127.0.0.1:{src.port}/ocpp/CP-1", subprotocols=["ocpp1.6"]) as ws,  # type: ignore[list-item]
    ):
        await ws.send('[2, "bad1", "MeterValues", {"connectorId": "x", "meterValue": []}]')
        await ws.send("not json")
        held = await intake.wait(2)
        assert [h.reason for h in held] == ["schema", "bad_json"]
        assert held[0].token == "bad1" and held[1].token is None  # no id: nothing to answer
        intake.commit()
        assert orjson.loads(await ws.recv())[:3] == [4, "bad1", "TypeConstraintViolation"]
        # The connection stays up: the next call is served.
        await ws.send(orjson.dumps([2, "ok", "Heartbeat", {}]).decode())
        await intake.wait(1)
        intake.commit()
        assert orjson.loads(await ws.recv())[:2] == [3, "ok"]


async def refused(url: str, protocols: list[str] | None = None) -> int:
    try:
        async with connect(url, subprotocols=protocols):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_upgrades_are_refused_without_the_right_key_path_or_subprotocol(db_url: str) -> None:
    async with central(db_url, auth="basic") as (src, intake, pool):
        async with pool.acquire() as conn:
            key = await new_key(conn, "CP-1")
        base = f"127.0.0.1:{src.port}"
        assert await refused(f"ws://{base}/ocpp/CP-1", ["ocpp1.6"]) == 401
        assert await refused(f"ws://CP-1:wrong@{base}/ocpp/CP-1", ["ocpp1.6"]) == 401
        assert await refused(f"ws://CP-2:{key}@{base}/ocpp/CP-1", ["ocpp1.6"]) == 401  # another's key
        assert await refused(f"ws://CP-1:{key}@{base}/ocpp/CP-1", ["ocpp2.0.1"]) == 400
        assert await refused(f"ws://CP-1:{key}@{base}/elsewhere/CP-1", ["ocpp1.6"]) == 404
        async with charge_point(src, "CP-1", key) as cp:
            committer = asyncio.create_task(committing(intake))
            assert (await cp.call(call.Heartbeat())) is not None
            committer.cancel()
            await src.store.connections.flush()
            rows = await pool.fetch("SELECT device_id, transport, worker FROM device_connections")
            assert [tuple(r) for r in rows] == [("CP-1", "ocpp", "w1")]
        while src.connections:  # noqa: ASYNC110 - the server's handler ends on its own
            await asyncio.sleep(0.01)
        await src.store.connections.flush()
        assert await pool.fetchval("SELECT count(*) FROM device_connections") == 0


async def test_a_second_connection_of_one_charge_point_replaces_the_first(db_url: str) -> None:
    async with central(db_url) as (src, intake, _):
        url = f"ws://127.0.0.1:{src.port}/ocpp/CP-1"
        async with (
            connect(url, subprotocols=["ocpp1.6"]) as first,  # type: ignore[list-item]
            charge_point(src, "CP-1") as cp,
        ):
            await first.wait_closed()
            committer = asyncio.create_task(committing(intake))
            assert (await cp.call(call.Heartbeat())) is not None
            committer.cancel()
            assert src.connections == 1
