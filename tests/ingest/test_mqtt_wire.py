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


def test_fields_are_read_within_their_packet() -> None:
    # A PUBACK of remaining length 0 followed by a PINGRESP: the packet id is not
    # borrowed from the next packet (it was, as PubAck(53248)).
    with pytest.raises(wire.ProtocolError, match="PUBACK cut short"):
        wire.Parser().feed(b"\x40\x00\xd0\x00")
    for cut_short in (
        b"\x20\x01\x00",  # CONNACK without its reason code
        b"\x20\x03\x00\x00\x05\x00\x00\x00",  # CONNACK properties longer than the packet
        b"\x90\x02\x00\x01",  # SUBACK without properties or reason codes
        b"\x90\x03\x00\x01\x00",  # SUBACK without a reason code
        b"\x32\x02\x00\x01",  # PUBLISH whose topic overruns the packet
        b"\x32\x05\x00\x01a\x00\x01",  # QoS 1 PUBLISH without its property length
        b"\x30\x03\x00\x01a",  # QoS 0 PUBLISH without its property length
        b"\x30\x05\x00\x01a\x80\x80",  # property length varint cut by the packet's end
        b"\xe0\x02\x00\x05",  # DISCONNECT properties overrun
        b"\x20\x05\x00\x00\x02\x13\x00",  # a two-byte property cut short
    ):
        with pytest.raises(wire.ProtocolError):
            wire.Parser().feed(cut_short + b"\xd0\x00\xd0\x00\xd0\x00")


def test_what_the_standard_calls_malformed_or_a_protocol_error() -> None:
    cases = {
        b"\x21\x03\x00\x00\x00": wire.MALFORMED,  # CONNACK with reserved flags
        b"\x20\x03\x02\x00\x00": wire.MALFORMED,  # reserved acknowledge flags
        b"\xd0\x01\x00": wire.MALFORMED,  # PINGRESP with a body
        b"\x34\x06\x00\x01a\x00\x01\x00": wire.PROTOCOL_ERROR,  # QoS 2: never granted
        b"\x36\x06\x00\x01a\x00\x01\x00": wire.MALFORMED,  # QoS 3
        b"\x32\x06\x00\x01a\x00\x00\x00": wire.MALFORMED,  # QoS 1 with packet id 0
        b"\x30\x03\x00\x00\x00": wire.PROTOCOL_ERROR,  # no topic and no alias allowed
        b"\x62\x02\x00\x01": wire.PROTOCOL_ERROR,  # PUBREL: no QoS 2 here
        b"\xf0\x00": wire.PROTOCOL_ERROR,  # AUTH: no enhanced authentication asked for
        b"\x10\x00": wire.PROTOCOL_ERROR,  # CONNECT from the broker
        b"\x20\x04\x00\x00\x00\x00": wire.MALFORMED,  # a byte after CONNACK's properties
    }
    for data, reason in cases.items():
        with pytest.raises(wire.ProtocolError) as err:
            wire.Parser().feed(data)
        assert err.value.reason == reason, data.hex()


def test_maximum_packet_size_counts_the_whole_packet() -> None:
    at_limit = publish_packet("a/b", b"x" * 100, 1)
    parser = wire.Parser(max_packet=len(at_limit))
    assert parser.feed(at_limit)[0] == [("a/b", b"x" * 100, 1)]
    over = publish_packet("a/b", b"x" * 101, 1)
    with pytest.raises(wire.ProtocolError) as err:
        parser.feed(over[:3])  # known from the fixed header, before the body arrives
    assert err.value.reason == wire.PACKET_TOO_LARGE


def test_connect_sends_maximum_packet_size_and_disconnect_a_reason() -> None:
    body = wire.connect("w-1", 30, False, 3600, 1000, max_packet_size=262_144)[2:]
    assert body[10] == 13  # properties: session expiry, receive maximum, maximum packet size
    assert body[19:24] == b"\x27" + struct.pack("!I", 262_144)
    assert wire.disconnect() == b"\xe0\x00"
    assert wire.disconnect(reason=wire.PACKET_TOO_LARGE) == b"\xe0\x01\x95"


def test_puback_unsuback_with_reasons() -> None:
    _, events = wire.Parser().feed(b"\x40\x03\x00\x07\x10" + b"\xb0\x04\x00\x02\x00\x11")
    assert events == [wire.PubAck(7, 0x10), wire.UnsubAck(2, (0x11,))]
