"""MQTT 5.0 wire format for a subscribing worker: the packets it sends and an
incremental parser of the packets it receives. Sans-I/O: bytes in, events out.

Only what a QoS 1 ingest subscriber needs: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBACK,
PINGREQ, DISCONNECT out; CONNACK, SUBACK, UNSUBACK, PUBLISH, PINGRESP, DISCONNECT in
(plus PUBLISH out and PUBACK in, for the benchmark's publisher). Anything else a
broker sends — another packet type, reserved flags, QoS 2, a field that overruns its
packet, a packet over the Maximum Packet Size — is a `ProtocolError`. PUBLISH
properties are skipped without being parsed (the worker asks for no topic aliases,
so none can change the topic). tests/ingest/test_mqtt_wire*.py check the codec
against paho-mqtt's encoder and arbitrary bytes; `python -m bench.fuzz_wire` fuzzes it
at length. See docs/mqtt-client.md for why this exists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 0x82, 0x90, 0xA2, 0xB0
PINGREQ, PINGRESP, DISCONNECT = 0xC0, 0xD0, 0xE0

MAX_PACKET = 268_435_455  # largest remaining length a 4-byte varint can carry

# Property id -> wire type, for skipping the properties of CONNACK/SUBACK/DISCONNECT.
_PROP_TYPES = {
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i",
    0x12: "s", 0x13: "h", 0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b",
    0x1A: "s", 0x1C: "s", 0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b",
    0x25: "b", 0x26: "p", 0x27: "i", 0x28: "b", 0x29: "b", 0x2A: "b",
}  # fmt: skip


# A received PUBLISH: (topic, payload, packet id or 0 for QoS 0).
Message = tuple[str, bytes, int]


# Reason codes of a DISCONNECT the client sends when it drops the connection (MQTT 5, 4.13).
MALFORMED, PROTOCOL_ERROR, PACKET_TOO_LARGE = 0x81, 0x82, 0x95


class ProtocolError(Exception):
    """The peer sent something this client cannot accept; the connection must close,
    after a DISCONNECT with `reason` (Malformed Packet, Protocol Error or Packet Too
    Large)."""

    def __init__(self, message: str, reason: int = MALFORMED) -> None:
        super().__init__(message)
        self.reason = reason


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def connect(
    client_id: str,
    keepalive: int,
    clean_start: bool,
    session_expiry: int,
    receive_maximum: int,
    username: str | None = None,
    password: str | None = None,
    max_packet_size: int | None = None,
) -> bytes:
    flags = 0x02 if clean_start else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = b"\x11" + struct.pack("!I", session_expiry) + b"\x21" + struct.pack("!H", receive_maximum)
    if max_packet_size is not None:
        props += b"\x27" + struct.pack("!I", max_packet_size)
    body = _str("MQTT") + bytes((5, flags)) + struct.pack("!H", keepalive)
    body += varint(len(props)) + props + _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return _packet(CONNECT, body)


def subscribe(packet_id: int, topic_filter: str, qos: int = 1) -> bytes:
    return _packet(SUBSCRIBE, struct.pack("!H", packet_id) + b"\x00" + _str(topic_filter) + bytes((qos,)))


def publish(topic: str, payload: bytes, packet_id: int = 0) -> bytes:
    """A PUBLISH without properties: QoS 1 when `packet_id`, else QoS 0 (benchmarks)."""
    body = _str(topic) + (struct.pack("!H", packet_id) if packet_id else b"") + b"\x00" + payload
    return _packet(0x32 if packet_id else 0x30, body)


_PUBACKS = [b"\x40\x02" + struct.pack("!H", i) for i in range(65536)]


def pubacks(packet_ids: list[int]) -> bytes:
    """PUBACK (success) for each packet id, as one buffer to write at once."""
    table = _PUBACKS
    return b"".join([table[i] for i in packet_ids])


def unsubscribe(packet_id: int, topic_filter: str) -> bytes:
    return _packet(UNSUBSCRIBE, struct.pack("!H", packet_id) + b"\x00" + _str(topic_filter))


def disconnect(session_expiry: int | None = None, reason: int = 0) -> bytes:
    """DISCONNECT with `reason` (0: normal; MALFORMED, PROTOCOL_ERROR, PACKET_TOO_LARGE
    when the worker drops a broker that broke the protocol); with `session_expiry` it
    also sets the session's expiry interval, 0 ending the session on the broker at once."""
    if session_expiry is None:
        return bytes((DISCONNECT, 1, reason)) if reason else DISCONNECT_PACKET
    props = b"\x11" + struct.pack("!I", session_expiry)
    return _packet(DISCONNECT, bytes((reason,)) + varint(len(props)) + props)


PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason: int
    server_keepalive: int | None = None
    receive_maximum: int | None = None


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reasons: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    reasons: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: int


@dataclass(frozen=True, slots=True)
class PingResp:
    """The broker answered a PINGREQ."""


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason: int = 0


Event = ConnAck | SubAck | UnsubAck | Disconnect | PingResp | PubAck


_FIXED_SIZE = {"b": 1, "h": 2, "i": 4}


def _u16(data: bytes, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise ProtocolError(f"{what} cut short")
    return (data[pos] << 8) | data[pos + 1]


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable byte integer at `pos`, not reading at or past `end`."""
    value = shift = 0
    for _ in range(4):
        if pos >= end:
            raise ProtocolError("variable byte integer cut short by the packet's end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ProtocolError("variable byte integer longer than 4 bytes")


def _properties(data: bytes, pos: int, end: int, packet: str) -> tuple[dict[int, object], int]:
    """The property block at `pos`, which must fit before `end`; returns (props,
    position after it)."""
    length, pos = _read_varint(data, pos, end)
    stop = pos + length
    if stop > end:
        raise ProtocolError(f"{packet}: property block of {length} bytes overruns the packet")
    props: dict[int, object] = {}
    while pos < stop:
        pid = data[pos]
        pos += 1
        kind = _PROP_TYPES.get(pid)
        value: object
        if kind is None:
            raise ProtocolError(f"{packet}: unknown property 0x{pid:02x}")
        if kind == "v":
            value, pos = _read_varint(data, pos, stop)
        elif kind == "s" or kind == "d":
            n = _u16(data, pos, stop, f"{packet}: property 0x{pid:02x}")
            value = bytes(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        elif kind == "p":
            for _ in range(2):
                pos += 2 + _u16(data, pos, stop, f"{packet}: property 0x{pid:02x}")
            value = None
        else:
            size = _FIXED_SIZE[kind]
            value = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        if pos > stop:
            raise ProtocolError(f"{packet}: property 0x{pid:02x} overruns the property block")
        props[pid] = value
    return props, stop


def _no_more(p: int, end: int, packet: str) -> None:
    if p != end:
        raise ProtocolError(f"{packet}: {end - p} bytes after the properties")


def _control(first: int, data: bytes, start: int, end: int) -> Event:
    """A packet other than PUBLISH, read from data[start:end] only."""
    length = end - start
    if first == CONNACK:
        if length < 2:
            raise ProtocolError("CONNACK cut short")
        if data[start] & 0xFE:
            raise ProtocolError("CONNACK: reserved acknowledge flags set")
        props: dict[int, object] = {}
        if length > 2:  # an MQTT 3.1.1 refusal has no property block
            props, p = _properties(data, start + 2, end, "CONNACK")
            _no_more(p, end, "CONNACK")
        ka, rm = props.get(0x13), props.get(0x21)
        return ConnAck(
            bool(data[start] & 1),
            data[start + 1],
            ka if isinstance(ka, int) else None,
            rm if isinstance(rm, int) else None,
        )
    if first in (SUBACK, UNSUBACK):
        name = "SUBACK" if first == SUBACK else "UNSUBACK"
        pid = _u16(data, start, end, name)
        _, p = _properties(data, start + 2, end, name)
        if p == end:
            raise ProtocolError(f"{name} without a reason code")
        reasons = tuple(data[p:end])
        return SubAck(pid, reasons) if first == SUBACK else UnsubAck(pid, reasons)
    if first == PUBACK:
        pid = _u16(data, start, end, "PUBACK")
        if length > 3:
            _, p = _properties(data, start + 3, end, "PUBACK")
            _no_more(p, end, "PUBACK")
        return PubAck(pid, data[start + 2] if length > 2 else 0)
    if first == PINGRESP:
        if length:
            raise ProtocolError(f"PINGRESP with a {length}-byte body")
        return PingResp()
    if first == DISCONNECT:
        if length > 1:
            _, p = _properties(data, start + 1, end, "DISCONNECT")
            _no_more(p, end, "DISCONNECT")
        return Disconnect(data[start] if length else 0)
    if first & 0xF0 in (CONNACK, PUBACK, SUBACK & 0xF0, UNSUBACK & 0xF0, PINGRESP, DISCONNECT):
        raise ProtocolError(f"packet 0x{first:02x}: reserved flags set")
    raise ProtocolError(f"unexpected packet type 0x{first:02x}", PROTOCOL_ERROR)


@dataclass
class Parser:
    """Incremental parser. `feed` returns PUBLISH messages as (topic, payload, packet
    id or 0 for QoS 0) in `messages`, and other packets as events. Any byte sequence
    ends in those or in `ProtocolError`: every field is read within its packet.

    Packets are sliced straight from the bytes of a read; only an incomplete packet
    at its end is kept (`buf`), and once `need` bytes are there it is joined with
    what follows. `max_packet` bounds a whole packet, fixed header included, as MQTT 5's
    Maximum Packet Size does: the worker sends it in CONNECT, so a bigger packet is
    the broker's protocol error."""

    buf: bytearray = field(default_factory=bytearray)
    max_packet: int = MAX_PACKET + 5
    need: int = 0  # bytes `buf` must hold before parsing is worth trying again

    def feed(self, data: bytes) -> tuple[list[Message], list[Event]]:
        messages: list[Message] = []
        events: list[Event] = []
        buf = self.buf
        if buf:
            buf += data
            if len(buf) < self.need:
                return messages, events
            data = bytes(buf)
            buf.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        pos = 0
        n = len(data)
        need = 0
        limit = self.max_packet
        while n - pos >= 2:
            first = data[pos]
            # remaining length (varint, 1-4 bytes)
            b = data[pos + 1]
            if b < 0x80:
                length, start = b, pos + 2
            else:
                length = b & 0x7F
                shift, start = 7, pos + 2
                while True:
                    if start >= n:
                        length = -1
                        break
                    b = data[start]
                    start += 1
                    length |= (b & 0x7F) << shift
                    if not b & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("malformed remaining length")
                if length < 0:
                    break
            end = start + length
            if end - pos > limit:
                raise ProtocolError(
                    f"packet of {end - pos} bytes exceeds the Maximum Packet Size ({limit})",
                    PACKET_TOO_LARGE,
                )
            if end > n:
                need = end - pos
                break
            if first & 0xF0 == PUBLISH:
                # Topic length, packet id and property length, each checked against
                # the packet's end before it is read.
                if length < 3:
                    raise ProtocolError(f"PUBLISH of {length} bytes")
                tlen = (data[start] << 8) | data[start + 1]
                if not tlen:
                    # No topic alias is allowed (the worker sends no Topic Alias Maximum).
                    raise ProtocolError("PUBLISH without a topic name", PROTOCOL_ERROR)
                p = tend = start + 2 + tlen
                if first & 0x06 == 0x02:
                    if p + 3 > end:  # packet id and at least the property length
                        raise ProtocolError("PUBLISH header overruns the packet")
                    packet_id = (data[p] << 8) | data[p + 1]
                    if not packet_id:
                        raise ProtocolError("QoS 1 PUBLISH with packet id 0")
                    p += 2
                elif first & 0x06:  # QoS 3 does not exist; QoS 2 was never granted
                    raise ProtocolError(
                        f"PUBLISH at QoS {(first & 0x06) >> 1}: the worker subscribes at QoS 1",
                        MALFORMED if first & 0x06 == 0x06 else PROTOCOL_ERROR,
                    )
                elif p >= end:
                    raise ProtocolError("PUBLISH header overruns the packet")
                else:
                    packet_id = 0
                plen = data[p]
                if plen < 0x80:
                    p += 1 + plen
                else:
                    plen, p = _read_varint(data, p, end)
                    p += plen
                if p > end:
                    raise ProtocolError("PUBLISH header overruns the packet")
                topic = data[start + 2 : tend].decode("utf-8", "surrogateescape")
                messages.append((topic, data[p:end], packet_id))
            else:
                events.append(_control(first, data, start, end))
            pos = end
        if pos < n:
            buf += memoryview(data)[pos:]
            self.need = need
        return messages, events
