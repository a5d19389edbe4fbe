"""The SL651 centre as a source: a raw-socket RTU dials it, its frames reach the
intake with the MQTT channel's topic, and the downlink acknowledgement comes only
when the intake hands the tokens back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry

from adapters.sl651 import crc16_modbus
from ingest.config import Sl651Config
from ingest.sources.sl651 import Sl651Source
from tests.ingest.intake import RecordingIntake
from tests.ingest.test_sl651_link import STATION, packets, report


@asynccontextmanager
async def centre(mode: str = "M2") -> AsyncIterator[tuple[Sl651Source, RecordingIntake]]:
    intake = RecordingIntake()
    src = Sl651Source(Sl651Config(enabled=True, port=0, mode=mode), "gz", intake, CollectorRegistry())
    task = asyncio.create_task(src.run())
    await asyncio.wait_for(src.listening.wait(), 5)
    try:
        yield src, intake
    finally:
        await src.close()
        await asyncio.wait_for(task, 5)


def acks_sent(src: Sl651Source) -> float:
    return src.registry.get_sample_value("ingest_sl651_acks_total") or 0.0


async def read_downlink(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(13), 5)
    rest = await reader.readexactly(((head[11] << 8 | head[12]) & 0xFFF) + 4)
    return head + rest


async def test_reports_reach_the_intake_and_are_acknowledged_only_after_commit() -> None:
    async with centre() as (src, intake):
        assert src.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", src.port)
        writer.write(b"garbage" + report(serial=11) + report(serial=12, level=1040.0))
        held = await intake.wait(2)
        assert [h.topic for h in held] == [f"gz/v1/reservoir/{STATION}/sl651"] * 2
        assert [h.token.serial for h in held] == [11, 12]
        # Nothing is answered before the commit.
        assert acks_sent(src) == 0
        intake.commit()
        acks = [await read_downlink(reader), await read_downlink(reader)]
        for serial, ack in zip((11, 12), acks, strict=True):
            assert ack[2:7].hex().upper() == STATION and ack[7] == 1  # station, then centre
            assert ack[10] == 0x32 and ack[11] >> 4 == 8 and ack[14:16] == serial.to_bytes(2, "big")
            assert ack[-3] == 0x1B and crc16_modbus(ack[:-2]) == int.from_bytes(ack[-2:], "big")
        writer.close()


async def test_bad_crc_is_refused_without_reply_and_the_line_stays_up() -> None:
    async with centre() as (src, intake):
        assert src.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", src.port)
        bad = bytearray(report(serial=1))
        bad[-2] ^= 0x55
        writer.write(bytes(bad) + report(serial=2))
        held = await intake.wait(2)
        assert held[0].reason == "bad_checksum" and held[0].token is None
        assert held[1].reason is None
        intake.commit()
        ack = await read_downlink(reader)
        assert ack[14:16] == (2).to_bytes(2, "big")  # only the good frame is answered
        writer.close()


async def test_multi_packet_message_is_one_message_answered_once() -> None:
    async with centre("M3") as (src, intake):
        assert src.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", src.port)
        single = report(serial=77)
        for p in packets(single, [10, len(single) - 27]):
            writer.write(p)
            await writer.drain()
        (held,) = await intake.wait(1)
        assert held.payload == single and held.token.serial == 77
        intake.commit()
        assert (await read_downlink(reader))[14:16] == (77).to_bytes(2, "big")
        writer.close()


async def test_an_acknowledgement_for_a_closed_line_is_dropped() -> None:
    async with centre() as (src, intake):
        assert src.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", src.port)
        writer.write(report(serial=3))
        await intake.wait(1)
        writer.close()
        await writer.wait_closed()
        while src.connections:  # noqa: ASYNC110 - the source's loss callback, no event to await
            await asyncio.sleep(0.01)
        intake.commit()  # no error: the station sends again and the repeat is stored once
        assert acks_sent(src) == 0


async def test_m1_never_replies() -> None:
    async with centre("M1") as (src, intake):
        assert src.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", src.port)
        writer.write(report(serial=3))
        (held,) = await intake.wait(1)
        assert held.token is None
        intake.commit()
        assert acks_sent(src) == 0
        writer.close()
