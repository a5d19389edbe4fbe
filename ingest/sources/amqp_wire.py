"""AMQP 0-9-1 framing for the consumer, sans-I/O: a parser that turns bytes into
deliveries and other frames, and the few frames a consumer sends.

The hot path — Basic.Deliver, its content header and body frames — is parsed here
with struct; every other frame (the handshake, declare/bind/qos/consume replies,
Channel.Close, Connection.Close) is rare and goes through pamqp. aiormq, which does
everything through pamqp with a queue and a task per frame, spent ~190 µs of CPU per
message on this machine (docs/transport.md); this parser a few.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands, frame, heartbeat
from pamqp.exceptions import PAMQPException

__all__ = [
    "HEARTBEAT",
    "PROTOCOL_HEADER",
    "Delivery",
    "Parser",
    "ProtocolError",
    "ack",
    "method",
]

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"

# (routing key, body, delivery tag)
Delivery = tuple[str, bytes, int]

_HEAD = struct.Struct(">BHI")
_CLASS_METHOD = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_ACK = struct.Struct(">BHIHHQBB")


class ProtocolError(Exception):
    """The broker sent bytes that are not AMQP 0-9-1 as this consumer expects it."""


def method(channel: int, m: Any) -> bytes:
    """A method frame (pamqp command) on a channel."""
    return frame.marshal(m, channel)


def ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return _ACK.pack(1, channel, 13, 60, 80, delivery_tag, 1 if multiple else 0, FRAME_END)


class Parser:
    """Feed bytes; get deliveries and (channel, frame) pairs of everything else."""

    def __init__(self, max_frame: int = 131072) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self._deliver: tuple[str, int] | None = None  # routing key, tag of the delivery in progress
        self._need = -1  # body bytes still to come; -1: expecting a content header
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> tuple[list[Delivery], list[tuple[int, Any]]]:
        buf = self._buf
        buf += data
        out: list[Delivery] = []
        events: list[tuple[int, Any]] = []
        pos = 0
        n = len(buf)
        try:
            while n - pos >= 8:
                ftype, channel, size = _HEAD.unpack_from(buf, pos)
                if size > self.max_frame:
                    raise ProtocolError(f"frame of {size} bytes, above the negotiated {self.max_frame}")
                end = pos + 7 + size
                if end >= n:
                    break
                if buf[end] != FRAME_END:
                    raise ProtocolError(f"frame end 0x{buf[end]:02x}, expected 0xce")
                if ftype == 3:
                    self._body(bytes(buf[pos + 7 : end]), out)
                elif ftype == 2:
                    if self._deliver is None:
                        raise ProtocolError("content header without a delivery")
                    if size < 12:
                        raise ProtocolError("short content header")
                    (body_size,) = _U64.unpack_from(buf, pos + 11)
                    self._need = body_size
                    self._parts = []
                    if body_size == 0:
                        self._body(b"", out)
                elif ftype == 1:
                    if self._deliver is not None:
                        raise ProtocolError("method frame inside a delivery's content")
                    cls, meth = _CLASS_METHOD.unpack_from(buf, pos + 7)
                    if cls == 60 and meth == 60:
                        self._deliver = _parse_deliver(buf, pos + 11, end)
                    else:
                        events.append((channel, _unmarshal(bytes(buf[pos : end + 1]))))
                elif ftype == 8:
                    events.append((channel, heartbeat.Heartbeat()))
                else:
                    raise ProtocolError(f"unknown frame type {ftype}")
                pos = end + 1
        except struct.error as exc:
            raise ProtocolError(f"truncated frame: {exc}") from None
        finally:
            del buf[:pos]
        return out, events

    def _body(self, part: bytes, out: list[Delivery]) -> None:
        if self._deliver is None or self._need < 0:
            raise ProtocolError("body frame without a content header")
        if len(part) > self._need:
            raise ProtocolError("body longer than its content header said")
        self._need -= len(part)
        if self._need == 0:
            key, tag = self._deliver
            body = part if not self._parts else b"".join([*self._parts, part])
            out.append((key, body, tag))
            self._deliver = None
            self._need = -1
            self._parts = []
        else:
            self._parts.append(part)


def _shortstr_end(buf: bytearray, p: int, end: int) -> int:
    q = p + 1 + buf[p]
    if q > end:
        raise ProtocolError("string runs past its frame")
    return q


def _parse_deliver(buf: bytearray, p: int, end: int) -> tuple[str, int]:
    """Basic.Deliver: consumer-tag, delivery-tag, redelivered, exchange, routing-key."""
    p = _shortstr_end(buf, p, end)  # consumer tag
    if p + 9 > end:
        raise ProtocolError("short Basic.Deliver")
    (tag,) = _U64.unpack_from(buf, p)
    p = _shortstr_end(buf, p + 9, end)  # exchange
    q = _shortstr_end(buf, p, end)
    try:
        key = bytes(buf[p + 1 : q]).decode()
    except UnicodeDecodeError:
        raise ProtocolError("routing key is not UTF-8") from None
    return key, tag


def _unmarshal(data: bytes) -> Any:
    try:
        return frame.unmarshal(data)[2]
    except (PAMQPException, ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad method frame: {type(exc).__name__}: {exc}") from None


# The commands the consumer sends or waits for, re-exported for the source.
Connection = commands.Connection
Channel = commands.Channel
Queue = commands.Queue
Basic = commands.Basic
