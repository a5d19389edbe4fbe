"""`ingest simulate --via ocpp-ws,sl651-tcp`: the fleet's reports as OCPP calls and
SL651 frames that the endpoints accept and the adapters decode to the same readings,
and a short real run into the real service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson

from adapters import Topic
from adapters import ocpp as ocpp_adapter
from adapters import sl651 as sl651_adapter
from ingest.simulate import Message
from ingest.simulate.cli import main
from ingest.simulate.edge import ocpp_calls, sl651_address, sl651_frame
from ingest.sources.ocpp_calls import Call, parse
from tests.ingest.test_edge_service import ADMIN, service
from tests.services import Broker

RX = datetime(2026, 1, 13, tzinfo=UTC)


def reports(run: list[Message], cls: str) -> list[Message]:
    return [m for m in run if m.device_class == cls and m.channel == "telemetry" and not m.bad]


def test_charger_reports_become_valid_calls_with_the_same_readings(mixed_run: list[Message]) -> None:
    msgs = reports(mixed_run, "charger")[:200]
    assert msgs
    for m in msgs:
        doc = orjson.loads(m.payload)
        topic = Topic("gz", "charger", m.device_id, "ocpp")
        for action, payload in ocpp_calls(doc):
            frame = orjson.dumps([2, "1", action, payload])
            assert isinstance(parse(frame), Call)  # the official schemas accept it
            decoded = ocpp_adapter.decode(topic, frame, RX)
            if action == "MeterValues":
                point, values = decoded.rows[0]
                for key, value in doc["metrics"].items():
                    name, _, p = key.partition(".")
                    if p == point and name in ocpp_adapter.CHARGER.metric_index:
                        assert values[ocpp_adapter.CHARGER.metric_index[name]] == value


def test_reservoir_reports_become_frames_with_the_same_readings(mixed_run: list[Message]) -> None:
    msgs = reports(mixed_run, "reservoir")[:200]
    assert msgs
    for m in msgs:
        doc = orjson.loads(m.payload)
        address = sl651_address(m.device_id)
        frame = sl651_frame(address, doc, 7)
        assert frame is not None
        decoded = sl651_adapter.decode(Topic("gz", "reservoir", address, "sl651"), frame, RX)
        values = dict(zip(sl651_adapter.RESERVOIR.columns, decoded.rows[0][1], strict=True))
        if "level_m" in doc["metrics"]:
            assert values["level_m"] == round(doc["metrics"]["level_m"], 3)


async def test_a_short_run_lands_through_both_endpoints(db_url: str, mqtt_broker: Broker) -> None:
    async with service(db_url, mqtt_broker) as svc:
        assert svc.ocpp is not None and svc.sl651 is not None
        argv = ["--port", str(mqtt_broker.port), "--scale", "0.001", "--classes", "charger,reservoir",
                "--speed", "0", "--messages", "300", "--quiet", "--client-id", "sim-edge",
                "--provision", f"http://127.0.0.1:{svc.http_port}", "--token", ADMIN,
                "--via", "ocpp-ws,sl651-tcp", "--ocpp-url", f"ws://127.0.0.1:{svc.ocpp.port}/ocpp",
                "--sl651", f"127.0.0.1:{svc.sl651.port}"]  # fmt: skip
        assert await asyncio.to_thread(main, argv) == 0
        await svc.pipeline.drain()  # what the endpoints took is committed
        charger = await svc.pool.fetchval("SELECT count(*) FROM readings_charger")
        reservoir = await svc.pool.fetch("SELECT DISTINCT device_id FROM readings_reservoir")
        keys = await svc.pool.fetchval("SELECT count(*) FROM ocpp_keys")
        assert charger > 0 and keys > 0
        assert reservoir and all(len(r[0]) == 10 and r[0].isdigit() for r in reservoir)
        # The stations were provisioned under their addresses: their region is known.
        regions = await svc.pool.fetch(
            "SELECT region FROM devices WHERE class = 'reservoir' AND region IS NULL"
        )
        assert not regions
