"""The MQTT 5 codec against an independent implementation: paho-mqtt's encoder.

Every packet paho builds is either decoded by our parser to what paho was given
(PUBLISH at QoS 0 and 1 with any properties, PUBACK, PINGRESP, DISCONNECT) or refused
with the ProtocolError the standard asks for (what a broker never sends this client);
every packet our client sends is byte for byte what paho sends for the same request.
CONNACK and SUBACK, which a client library does not build, are assembled from paho's
property and reason-code encoders. paho's packets are taken from its send queue: the
private `_send_*` methods are its encoder, and nothing goes on a network."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.sources import mqtt_wire as wire


class _NoSocket:
    """Stands where paho keeps its socket: paho sends only while one exists."""

    def close(self) -> None:
        pass


class Encoder:
    """A paho v5 client whose packets land in `sent` instead of a socket."""

    def __init__(self, client_id: str = "oracle") -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.sent: list[bytes] = []

        def queue(command: int, packet: bytes, mid: int, qos: int, info: Any = None) -> int:
            self.sent.append(bytes(packet))
            return paho.MQTT_ERR_SUCCESS

        self.client._packet_queue = queue  # type: ignore[method-assign]
        self.client._sock = _NoSocket()  # type: ignore[assignment]

    def last(self) -> bytes:
        return self.sent[-1]


def parse_one(packet: bytes) -> tuple[list[wire.Message], list[wire.Event]]:
    out = wire.Parser().feed(packet)
    assert len(out[0]) + len(out[1]) == 1, out
    return out


utf8 = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)
short_text = st.text(st.characters(codec="utf-8"), max_size=12)


@st.composite
def publish_properties(draw: st.DrawFn) -> Properties | None:
    if draw(st.booleans()):
        return None
    props = Properties(PacketTypes.PUBLISH)
    if draw(st.booleans()):
        props.PayloadFormatIndicator = draw(st.integers(0, 1))
    if draw(st.booleans()):
        props.MessageExpiryInterval = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        props.ContentType = draw(short_text)
    if draw(st.booleans()):
        props.ResponseTopic = draw(utf8)
    if draw(st.booleans()):
        props.CorrelationData = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        props.SubscriptionIdentifier = draw(st.integers(1, 268_435_455))
    for _ in range(draw(st.integers(0, 3))):
        props.UserProperty = (draw(short_text), draw(short_text))
    return props


@settings(max_examples=150, deadline=None)
@given(
    utf8,
    st.binary(max_size=2000),
    st.integers(0, 1),
    st.integers(1, 65535),
    st.booleans(),
    st.booleans(),
    publish_properties(),
)
def test_publish_from_paho_decodes(
    topic: str, payload: bytes, qos: int, mid: int, retain: bool, dup: bool, props: Properties | None
) -> None:
    enc = Encoder()
    enc.client._send_publish(mid, topic.encode(), payload, qos, retain, dup and qos > 0, None, props)
    msgs, _ = parse_one(enc.last())
    assert msgs == [(topic, payload, mid if qos else 0)]


def test_publish_at_qos_2_from_paho_is_refused() -> None:
    enc = Encoder()
    enc.client._send_publish(9, b"a/b", b"x", 2)
    with pytest.raises(wire.ProtocolError) as err:
        wire.Parser().feed(enc.last())
    assert err.value.reason == wire.PROTOCOL_ERROR


@given(st.integers(0, 65535))
def test_puback_pingresp_from_paho_decode(mid: int) -> None:
    enc = Encoder()
    enc.client._send_puback(mid)
    enc.client._send_pingresp()
    _, events = wire.Parser().feed(b"".join(enc.sent))
    assert events == [wire.PubAck(mid), wire.PingResp()]


disconnect_reasons = st.sampled_from(
    [0x00, 0x04, 0x80, 0x81, 0x82, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x93, 0x95, 0x97, 0x98, 0x9C, 0xA2]
)


@given(disconnect_reasons, st.one_of(st.none(), short_text), st.integers(0, 2))
def test_disconnect_from_paho_decodes(reason: int, reason_string: str | None, users: int) -> None:
    props = None
    if reason_string is not None or users:
        props = Properties(PacketTypes.DISCONNECT)
        if reason_string is not None:
            props.ReasonString = reason_string
        for i in range(users):
            props.UserProperty = (f"k{i}", "v")
    enc = Encoder()
    enc.client._send_disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=reason), props)
    _, events = parse_one(enc.last())
    assert events == [wire.Disconnect(reason)]


def test_client_packets_from_paho_are_refused_as_protocol_errors() -> None:
    """What paho sends as a client a broker never sends to one."""
    enc = Encoder("w")
    enc.client._send_connect(30)
    enc.client._send_subscribe(0, [(b"a/#", SubscribeOptions(qos=1))])
    enc.client._send_unsubscribe(0, [b"a/#"])
    enc.client._send_pingreq()
    enc.client._send_pubrec(1)
    enc.client._send_pubrel(1)
    enc.client._send_pubcomp(1)
    assert len(enc.sent) == 7
    for packet in enc.sent:
        with pytest.raises(wire.ProtocolError) as err:
            wire.Parser().feed(packet)
        assert err.value.reason == wire.PROTOCOL_ERROR, packet.hex()


@st.composite
def connack_properties(draw: st.DrawFn) -> Properties:
    props = Properties(PacketTypes.CONNACK)
    if draw(st.booleans()):
        props.ServerKeepAlive = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        props.ReceiveMaximum = draw(st.integers(1, 65535))
    if draw(st.booleans()):
        props.SessionExpiryInterval = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        props.MaximumPacketSize = draw(st.integers(1, 268_435_455))
    if draw(st.booleans()):
        props.AssignedClientIdentifier = draw(short_text)
    if draw(st.booleans()):
        props.ReasonString = draw(short_text)
    if draw(st.booleans()):
        props.UserProperty = (draw(short_text), draw(short_text))
    if draw(st.booleans()):
        props.SharedSubscriptionAvailable = draw(st.integers(0, 1))
    return props


@given(st.booleans(), st.sampled_from([0x00, 0x80, 0x84, 0x86, 0x87, 0x88, 0x8A, 0x9F]), connack_properties())
def test_connack_built_with_paho_properties_decodes(present: bool, reason: int, props: Properties) -> None:
    rc = ReasonCode(PacketTypes.CONNACK, identifier=reason).pack()
    body = bytes((int(present),)) + rc + props.pack()
    _, events = parse_one(b"\x20" + wire.varint(len(body)) + body)
    keepalive = getattr(props, "ServerKeepAlive", None)
    receive_maximum = getattr(props, "ReceiveMaximum", None)
    assert events == [wire.ConnAck(present, reason, keepalive, receive_maximum)]


@given(st.integers(1, 65535), st.lists(st.sampled_from([0, 1, 2, 0x80, 0x87, 0x8F, 0x9E]), min_size=1))
def test_suback_built_with_paho_properties_decodes(mid: int, reasons: list[int]) -> None:
    props = Properties(PacketTypes.SUBACK)
    props.ReasonString = "ok"
    body = struct.pack("!H", mid) + props.pack()
    body += b"".join(ReasonCode(PacketTypes.SUBACK, identifier=r).pack() for r in reasons)
    _, events = parse_one(b"\x90" + wire.varint(len(body)) + body)
    assert events == [wire.SubAck(mid, tuple(reasons))]


# ---- what our client sends, against what paho sends ----


@given(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=64),
    st.integers(0, 65535),
    st.booleans(),
    st.integers(0, 2**32 - 1),
    st.integers(1, 65535),
    st.one_of(st.none(), short_text),
    st.one_of(st.none(), short_text),
    st.one_of(st.none(), st.integers(1, 268_435_455)),
)
def test_connect_matches_paho(
    client_id: str,
    keepalive: int,
    clean_start: bool,
    session_expiry: int,
    receive_maximum: int,
    username: str | None,
    password: str | None,
    max_packet_size: int | None,
) -> None:
    if username is None:
        password = None  # paho sends a password only with a user name
    enc = Encoder(client_id)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    props.ReceiveMaximum = receive_maximum
    if max_packet_size is not None:
        props.MaximumPacketSize = max_packet_size
    enc.client._connect_properties = props
    enc.client._clean_start = clean_start
    if username is not None:
        enc.client.username_pw_set(username, password)
    enc.client._send_connect(keepalive)
    ours = wire.connect(
        client_id,
        keepalive,
        clean_start,
        session_expiry,
        receive_maximum,
        username,
        password,
        max_packet_size,
    )
    assert ours == enc.last()


@given(st.integers(1, 65535), st.text(st.characters(codec="utf-8"), min_size=1, max_size=80))
def test_subscribe_unsubscribe_match_paho(mid: int, topic_filter: str) -> None:
    enc = Encoder()
    enc.client._last_mid = mid - 1  # paho numbers its own packets: make it use `mid`
    enc.client._send_subscribe(0, [(topic_filter.encode(), SubscribeOptions(qos=1))])
    assert wire.subscribe(mid, topic_filter) == enc.last()
    enc.client._last_mid = mid - 1
    enc.client._send_unsubscribe(0, [topic_filter.encode()])
    assert wire.unsubscribe(mid, topic_filter) == enc.last()


@given(utf8, st.binary(max_size=500), st.integers(0, 65535))
def test_publish_puback_match_paho(topic: str, payload: bytes, mid: int) -> None:
    enc = Encoder()
    enc.client._send_publish(mid, topic.encode(), payload, 1 if mid else 0)
    assert wire.publish(topic, payload, mid) == enc.last()
    enc.client._send_puback(mid)
    assert wire.pubacks([mid]) == enc.last()


@given(disconnect_reasons)
def test_pingreq_disconnect_match_paho(reason: int) -> None:
    enc = Encoder()
    enc.client._send_pingreq()
    assert enc.last() == wire.PINGREQ_PACKET
    enc.client._send_disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=reason) if reason else None)
    assert wire.disconnect(reason=reason) == enc.last()
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0  # the clean leave ends the session
    enc.client._send_disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=reason), props)
    assert wire.disconnect(0, reason) == enc.last()
