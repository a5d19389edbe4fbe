"""MQTT 5.0 wire format for a subscribing worker: the packets it sends and an
incremental parser of the packets it receives. Sans-I/O: bytes in, events out.

Only what a QoS 1 ingest subscriber needs: CONNECT, SUBSCRIBE, PUBACK, PINGREQ,
DISCONNECT out; CONNACK, SUBACK, PUBLISH, PINGRESP, DISCONNECT in (plus PUBLISH out
and PUBACK in, for the benchmark's publisher). PUBLISH
properties are skipped without being parsed (the worker asks for no topic aliases,
so none can change the topic). See docs/mqtt-client.md for why this exists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0
UNSUBSCRIBE, UNSUBACK = 0xA2, 0xB0

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


class ProtocolError(Exception):
    """The peer sent something this client cannot accept; the connection must close."""


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
) -> bytes:
    flags = 0x02 if clean_start else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = b"\x11" + struct.pack("!I", session_expiry) + b"\x21" + struct.pack("!H", receive_maximum)
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


def disconnect(session_expiry: int | None = None) -> bytes:
    """DISCONNECT (normal); with `session_expiry` it also sets the session's expiry
    interval, 0 ending the session on the broker at once."""
    if session_expiry is None:
        return DISCONNECT_PACKET
    props = b"\x11" + struct.pack("!I", session_expiry)
    return _packet(DISCONNECT, b"\x00" + varint(len(props)) + props)


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


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: int


@dataclass(frozen=True, slots=True)
class PingResp:
    """The broker answered a PINGREQ."""


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int


Event = ConnAck | SubAck | UnsubAck | Disconnect | PingResp | PubAck


def _properties(data: bytes | bytearray, pos: int) -> tuple[dict[int, object], int]:
    """Parse a property block at `pos`; returns (props, position after it)."""
    length, pos = _read_varint(data, pos)
    end = pos + length
    props: dict[int, object] = {}
    while pos < end:
        pid = data[pos]
        kind = _PROP_TYPES.get(pid)
        pos += 1
        if kind == "b":
            props[pid] = data[pos]
            pos += 1
        elif kind == "h":
            props[pid] = (data[pos] << 8) | data[pos + 1]
            pos += 2
        elif kind == "i":
            props[pid] = struct.unpack_from("!I", data, pos)[0]
            pos += 4
        elif kind == "v":
            props[pid], pos = _read_varint(data, pos)
        elif kind in ("s", "d"):
            n = (data[pos] << 8) | data[pos + 1]
            props[pid] = bytes(data[pos + 2 : pos + 2 + n])
            pos += 2 + n
        elif kind == "p":
            for _ in range(2):
                n = (data[pos] << 8) | data[pos + 1]
                pos += 2 + n
        else:
            raise ProtocolError(f"unknown property 0x{pid:02x}")
    if pos != end:
        raise ProtocolError("property block overruns its length")
    return props, end


def _read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ProtocolError("malformed variable byte integer")


@dataclass
class Parser:
    """Incremental parser. `feed` returns PUBLISH messages as (topic, payload, packet
    id or 0 for QoS 0) in `messages`, and other packets as events.

    Packets are sliced straight from the bytes of a read; only an incomplete packet
    at its end is kept (`buf`), and once `need` bytes are there it is joined with
    what follows."""

    buf: bytearray = field(default_factory=bytearray)
    max_packet: int = MAX_PACKET
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
            if length > self.max_packet:
                raise ProtocolError(f"packet of {length} bytes exceeds the limit")
            end = start + length
            if end > n:
                need = end - pos
                break
            kind = first & 0xF0
            if kind == PUBLISH:
                tlen = (data[start] << 8) | data[start + 1]
                p = start + 2 + tlen
                topic = data[start + 2 : p].decode("utf-8", "surrogateescape")
                if first & 0x06:
                    packet_id = (data[p] << 8) | data[p + 1]
                    p += 2
                else:
                    packet_id = 0
                plen = data[p]
                if plen < 0x80:
                    p += 1 + plen
                else:
                    plen, p = _read_varint(data, p)
                    p += plen
                if p > end:
                    raise ProtocolError("PUBLISH header overruns the packet")
                messages.append((topic, data[p:end], packet_id))
            elif kind == CONNACK:
                props, _ = _properties(data, start + 2) if length > 2 else ({}, 0)
                ka, rm = props.get(0x13), props.get(0x21)
                events.append(
                    ConnAck(
                        bool(data[start] & 1),
                        data[start + 1],
                        ka if isinstance(ka, int) else None,
                        rm if isinstance(rm, int) else None,
                    )
                )
            elif kind == SUBACK & 0xF0:
                pid = (data[start] << 8) | data[start + 1]
                _, p = _properties(data, start + 2)
                events.append(SubAck(pid, tuple(data[p:end])))
            elif kind == PINGRESP:
                events.append(PingResp())
            elif kind == DISCONNECT:
                events.append(Disconnect(data[start] if length else 0))
            elif kind == PUBACK:
                events.append(PubAck((data[start] << 8) | data[start + 1]))
            elif kind == UNSUBACK and length >= 2:
                events.append(UnsubAck((data[start] << 8) | data[start + 1]))
            elif kind not in (0x50, 0x60, 0x70, 0xF0):  # QoS 2 flow, AUTH: ignored
                raise ProtocolError(f"unexpected packet type 0x{first:02x}")
            pos = end
        if pos < n:
            buf += memoryview(data)[pos:]
            self.need = need
        return messages, events
