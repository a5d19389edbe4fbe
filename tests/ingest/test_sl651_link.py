"""The SL651 centre's link layer: framing a byte stream, garbage, bad CRCs,
multi-packet reassembly and the downlink acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import Topic
from adapters.sl651 import BEIJING, ETB, ETX, SYN, Element, crc16_modbus, decode, encode
from ingest.sources.sl651_link import EOT, ESC, Framer, Refused, Reply, Uplink, downlink

STATION = "0052010001"
OBS = datetime(2026, 7, 1, 8, 0, tzinfo=BEIJING)
RX = OBS + timedelta(minutes=1)
TOPIC = Topic("gz", "reservoir", STATION, "sl651")


def report(serial: int = 7, level: float = 1032.5, function: int = 0x32, observed: datetime = OBS) -> bytes:
    return encode(function, STATION, observed, [Element(0x3B, level), Element(0x20, 1.5)], serial)


def packets(frame: bytes, sizes: list[int]) -> list[bytes]:
    """Split a single-packet frame's body into multi-packet frames (STX 16)."""
    body = frame[14:-3]
    assert sum(sizes) == len(body)
    out, at = [], 0
    for k, size in enumerate(sizes, 1):
        part = body[at : at + size]
        at += size
        info = (len(sizes) << 12 | k).to_bytes(3, "big")
        end = ETX if k == len(sizes) else ETB
        head = frame[:11] + (len(part) + 3).to_bytes(2, "big") + bytes((SYN,)) + info
        f = head + part + bytes((end,))
        out.append(f + crc16_modbus(f).to_bytes(2, "big"))
    return out


def test_downlink_matches_a_published_pair() -> None:
    # The published test report 30 of station 0012345678 (centre 01, password 1234,
    # serial 0003) and its downlink answer, which ends with ESC and CRC 75D4.
    reply = Reply(bytes.fromhex("0012345678"), 1, bytes.fromhex("1234"), 0x30, 3)
    sent = datetime(2059, 10, 11, 15, 49, 47, tzinfo=BEIJING)
    assert downlink(reply, sent, ESC).hex().upper() == "7E7E00123456780112343080080200035910111549471B75D4"
    assert downlink(reply, sent, EOT)[-3] == EOT


def test_a_report_becomes_one_uplink_with_its_reply() -> None:
    frame = report(serial=42)
    (ev,) = Framer("M2").feed(frame)
    assert isinstance(ev, Uplink)
    assert ev.station == STATION and ev.frame == frame
    assert ev.reply == Reply(bytes.fromhex(STATION), 1, bytes.fromhex("1234"), 0x32, 42)


def test_modes_and_keepalives_decide_whether_to_reply() -> None:
    keepalive = encode(0x2F, STATION, sent=OBS, serial=3)
    assert [e.reply for e in Framer("M2").feed(keepalive)] == [None]  # type: ignore[union-attr]
    assert [e.reply for e in Framer("M1").feed(report())] == [None]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="M4"):
        Framer("M4")


def test_frames_split_across_reads_and_garbage_between_them() -> None:
    a, b = report(serial=1), report(serial=2, level=1033.0)
    stream = b"\x00\xff noise" + a + b"\x7e\x7e\x01junk" + b + b"\x7e"
    framer = Framer()
    got: list[Uplink | Refused] = []
    for i in range(0, len(stream), 5):
        got += framer.feed(stream[i : i + 5])
    assert [e.frame for e in got if isinstance(e, Uplink)] == [a, b]
    assert not [e for e in got if isinstance(e, Refused)]
    assert framer.garbage_bytes == len(stream) - len(a) - len(b) - 1  # the trailing 7E waits


def test_a_bad_crc_is_refused_and_the_next_frame_still_arrives() -> None:
    bad = bytearray(report(serial=1))
    bad[-1] ^= 0xFF
    good = report(serial=2)
    events = Framer().feed(bytes(bad) + good)
    assert isinstance(events[0], Refused) and events[0].reason == "bad_checksum"
    assert events[0].station == STATION and events[0].payload == bytes(bad)
    assert isinstance(events[1], Uplink) and events[1].frame == good


def test_a_false_header_does_not_hold_back_the_frame_after_it() -> None:
    # 7E7E and a plausible header claiming 4,000 body bytes, then a real frame: the
    # real frame is delivered now, not after 4,000 more bytes.
    fake = b"\x7e\x7e" + bytes(9) + b"\x0f\xa0\x02"
    good = report()
    events = Framer().feed(fake + good)
    assert [e.frame for e in events if isinstance(e, Uplink)] == [good]


def test_the_ascii_form_is_refused_not_fatal() -> None:
    framer = Framer()
    events = framer.feed(b"\x01" + b"010052010001" + b"\x02junk\x03ABCD" + report())
    assert isinstance(events[0], Refused) and events[0].reason == "unsupported"
    assert "ASCII" in events[0].detail
    assert isinstance(events[1], Uplink)


def test_a_downlink_frame_from_a_station_is_refused() -> None:
    frame = encode(0x32, STATION, OBS, [Element(0x3B, 1.0)], downlink=True)
    (ev,) = Framer().feed(frame)
    assert isinstance(ev, Refused) and ev.reason == "unsupported"


def test_multi_packet_reassembly_decodes_like_the_single_frame() -> None:
    single = report(serial=9)
    body = len(single) - 17
    parts = packets(single, [10, body - 20, 10])
    framer = Framer("M3")
    assert framer.feed(parts[0]) == []
    assert framer.feed(parts[1]) == []
    (ev,) = framer.feed(parts[2])
    assert isinstance(ev, Uplink)
    assert ev.frame == single  # the same frame, so the adapter decodes it the same way
    assert ev.reply is not None and ev.reply.serial == 9
    assert decode(TOPIC, ev.frame, RX.astimezone(UTC)).rows == decode(TOPIC, single, RX).rows


def test_packets_out_of_order_and_repeated() -> None:
    single = report(serial=5)
    p1, p2, p3 = packets(single, [8, 8, len(single) - 33])
    framer = Framer()
    events = framer.feed(p3 + p1 + p1 + p2)
    assert [e.frame for e in events if isinstance(e, Uplink)] == [single]


def test_an_incomplete_message_is_refused_when_another_begins_or_the_line_closes() -> None:
    first = packets(report(serial=1), [8, len(report()) - 25])
    second = packets(report(serial=2, level=1040.0), [8, len(report()) - 25])
    framer = Framer()
    events = framer.feed(first[0] + second[0] + second[1])
    assert isinstance(events[0], Refused) and events[0].reason == "bad_frame"
    assert "packets 1 of 2" in events[0].detail and events[0].payload == first[0]
    assert isinstance(events[1], Uplink) and events[1].reply is not None and events[1].reply.serial == 2
    framer.feed(first[0])
    (closed,) = framer.close()
    assert isinstance(closed, Refused) and "closed" in closed.detail


def test_a_bad_packet_number_is_a_bad_frame() -> None:
    (p1,) = packets(report(), [len(report()) - 17])
    wrong = bytearray(p1)
    wrong[14:17] = (1 << 12 | 3).to_bytes(3, "big")  # packet 3 of 1
    wrong[-2:] = crc16_modbus(bytes(wrong[:-2])).to_bytes(2, "big")
    (ev,) = Framer().feed(bytes(wrong))
    assert isinstance(ev, Refused) and ev.reason == "bad_frame"


_NOISE = st.binary(max_size=64).map(lambda b: b.replace(b"\x7e", b"\x7d"))


@settings(max_examples=300, deadline=None)
@given(st.lists(_NOISE, min_size=4, max_size=4), st.integers(1, 40))
def test_frames_among_noise_arrive_once_whatever_the_reads(noise: list[bytes], step: int) -> None:
    frames = [report(serial=i) for i in range(3)]
    stream = noise[0] + frames[0] + noise[1] + frames[1] + noise[2] + frames[2] + noise[3]
    framer = Framer()
    got: list[Uplink | Refused] = []
    for i in range(0, len(stream), step):
        got += framer.feed(stream[i : i + step])
    assert [e.frame for e in got if isinstance(e, Uplink)] == frames


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_never_raise(reads: list[bytes]) -> None:
    framer = Framer()
    for data in reads:
        for ev in framer.feed(b"\x7e\x7e" + data):
            assert isinstance(ev, Uplink | Refused)
    framer.close()
