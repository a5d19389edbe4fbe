"""The MQTT 5 codec: packets as the standard lays them out, and a parser that gives
the same result however the byte stream is cut."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sources import mqtt_wire as wire


def publish_packet(topic: str, payload: bytes, packet_id: int, props: bytes = b"") -> bytes:
    """A PUBLISH as a broker sends it (QoS 1 when packet_id, else QoS 0)."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t
    if packet_id:
        body += struct.pack("!H", packet_id)
    body += wire.varint(len(props)) + props + payload
    first = 0x32 if packet_id else 0x30
    return bytes((first,)) + wire.varint(len(body)) + body


def test_varint_boundaries() -> None:
    assert wire.varint(0) == b"\x00"
    assert wire.varint(127) == b"\x7f"
    assert wire.varint(128) == b"\x80\x01"
    assert wire.varint(16_383) == b"\xff\x7f"
    assert wire.varint(2_097_152) == b"\x80\x80\x80\x01"


def test_connect_packet_layout() -> None:
    pkt = wire.connect("w-1", 30, False, 3600, 1000, "dev", "pw")
    assert pkt[0] == 0x10
    body = pkt[2:]
    assert pkt[1] == len(body)
    assert body[:6] == b"\x00\x04MQTT" and body[6] == 5
    assert body[7] == 0x80 | 0x40  # username, password; clean start off
    assert body[8:10] == struct.pack("!H", 30)
    assert body[10] == 8  # properties: session expiry (5 bytes) + receive maximum (3)
    assert body[11:16] == b"\x11" + struct.pack("!I", 3600)
    assert body[16:19] == b"\x21" + struct.pack("!H", 1000)
    assert body[19:] == b"\x00\x03w-1\x00\x03dev\x00\x02pw"


def test_subscribe_and_puback() -> None:
    assert wire.subscribe(1, "$share/g/gz/v1/+/+/+") == (
        b"\x82\x1a\x00\x01\x00\x00\x14$share/g/gz/v1/+/+/+\x01"
    )
    assert wire.pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def test_connack_with_properties() -> None:
    props = b"\x13\x00\x3c" + b"\x21\x00\x14" + b"\x26\x00\x01k\x00\x01v"
    body = b"\x01\x00" + wire.varint(len(props)) + props
    msgs, events = wire.Parser().feed(b"\x20" + wire.varint(len(body)) + body)
    assert msgs == []
    assert events == [wire.ConnAck(True, 0, 60, 20)]


def test_publish_with_properties_and_large_payload() -> None:
    payload = b"x" * 70_000  # a 3-byte remaining length
    props = b"\x01\x01" + b"\x03\x00\x10application/json"
    msgs, _ = wire.Parser().feed(publish_packet("gz/v1/charger/c1/telemetry", payload, 7, props))
    assert msgs == [("gz/v1/charger/c1/telemetry", payload, 7)]


def test_suback_disconnect_pingresp_puback() -> None:
    data = b"\x90\x04\x00\x01\x00\x01" + b"\xd0\x00" + b"\xe0\x01\x8b" + b"\x40\x02\x01\x02"
    _, events = wire.Parser().feed(data)
    assert events == [wire.SubAck(1, (1,)), wire.PingResp(), wire.Disconnect(0x8B), wire.PubAck(258)]


def test_publish_encoder_matches_the_parser() -> None:
    assert wire.publish("a/b", b"xy", 5) == publish_packet("a/b", b"xy", 5)
    assert wire.publish("a/b", b"xy") == publish_packet("a/b", b"xy", 0)


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.Parser().feed(b"\x00\x00")
    with pytest.raises(wire.ProtocolError):
        wire.Parser().feed(b"\x32\xff\xff\xff\xff\x01")


messages = st.lists(
    st.tuples(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40),
        st.binary(max_size=300),
        st.integers(0, 65535),
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(messages, st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_any_cut_of_the_stream_gives_the_same_messages(
    msgs: list[tuple[str, bytes, int]], cuts: list[int]
) -> None:
    stream = b"".join(publish_packet(t, p, i) for t, p, i in msgs)
    parser = wire.Parser()
    got: list[tuple[str, bytes, int]] = []
    pos, k = 0, 0
    while pos < len(stream):
        step = cuts[k % len(cuts)]
        out, _ = parser.feed(stream[pos : pos + step])
        got.extend(out)
        pos += step
        k += 1
    assert got == msgs
    assert not parser.buf
