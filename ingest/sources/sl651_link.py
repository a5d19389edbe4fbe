"""SL 651-2014 link layer of the centre, sans-I/O: bytes of an RTU's TCP stream in,
whole frames and the downlink acknowledgement out.

`Framer.feed` finds HEX/BCD frames in a byte stream (`7E7E` … length word … ETX/ETB ·
CRC-16/MODBUS), skips garbage between them without losing the frame after it, checks
the CRC, and reassembles multi-packet messages (STX `16`: three bytes after it give
the packet count, high 12 bits, and the 1-based packet number, low 12 bits; the
length word counts them; the first packet's body begins with the serial and send
time, later packets continue the body; ETB `17` ends every packet but the last,
which ends with ETX). A reassembled message becomes one ordinary single-packet frame
(STX … ETX, new CRC), so the adapter decodes it exactly as a frame forwarded onto
MQTT. The layout of the multi-packet header was checked against an open
implementation's test vectors, not against the standard's text ⚠.

`downlink` builds the centre's acknowledgement: `7E7E` · station address (5) ·
centre address (1) — the downlink order — · password · the uplink's function code ·
`8008` (downlink flag, 8 body bytes) · STX · the uplink's serial · the centre's send
time (BCD, Beijing) · EOT `04` or ESC `1B` · CRC. Checked against a published
uplink/downlink pair (tests).

Modes: M1 — the station expects no reply; M2 and M3 — every report is
acknowledged, a multi-packet (M3) message once, when all its packets are in
(intermediate packets get no reply ⚠). Keep-alives (2F) are never answered (the
published examples show none).

The ASCII form (SOH `01` …) is not decoded: its layout could not be confirmed from
a source we could read. An ASCII frame is refused as `unsupported` and skipped like
garbage; the connection stays up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from adapters.sl651 import BEIJING, ETB, ETX, KEEPALIVE, STX, SYN, crc16_modbus

__all__ = ["EOT", "ESC", "MODES", "Framer", "Refused", "Reply", "Uplink", "downlink"]

EOT: Final = 0x04  # end of transmission: the station may hang up
ESC: Final = 0x1B  # end of transmission, the station stays online
SOH_ASCII: Final = 0x01
MODES: Final = ("M1", "M2", "M3")
_START: Final = b"\x7e\x7e"
_HEADER: Final = 14  # 7E7E … start character
_OVERHEAD: Final = 17  # header + end character + CRC
MAX_MESSAGE: Final = 0xFFF  # a reassembled body must fit one frame's 12-bit length


@dataclass(frozen=True, slots=True)
class Reply:
    """What the acknowledgement of one uplink message needs: the source's token."""

    station: bytes  # 5 bytes, as in the uplink
    centre: int
    password: bytes  # 2 bytes
    function: int
    serial: int


@dataclass(frozen=True, slots=True)
class Uplink:
    """A whole uplink message as one single-packet frame, ready for the adapter."""

    station: str  # 10 hex digits: the device id
    frame: bytes
    reply: Reply | None  # None: the mode asks for no acknowledgement


@dataclass(frozen=True, slots=True)
class Refused:
    """Bytes the link layer itself refuses: stored as a dead letter, never answered."""

    station: str  # "" when no address could be read
    payload: bytes
    reason: str
    detail: str


Event = Uplink | Refused


def _bcd_now(now: datetime) -> bytes:
    return bytes.fromhex(now.astimezone(BEIJING).strftime("%y%m%d%H%M%S"))


def downlink(reply: Reply, now: datetime, end: int = ESC) -> bytes:
    """The centre's acknowledgement of one uplink message (pure: the caller passes now)."""
    body = reply.serial.to_bytes(2, "big") + _bcd_now(now)
    frame = (
        _START + reply.station + bytes((reply.centre,)) + reply.password + bytes((reply.function,))
        + (0x8000 | len(body)).to_bytes(2, "big") + bytes((STX,)) + body + bytes((end,))
    )  # fmt: skip
    return frame + crc16_modbus(frame).to_bytes(2, "big")


@dataclass(slots=True)
class _Partial:
    total: int
    first: bytes | None = None  # the first packet's frame (its header is the message's)
    parts: dict[int, bytes] = field(default_factory=dict)  # packet number -> body
    raw: list[bytes] = field(default_factory=list)  # the packets as received


class Framer:
    """One connection's stream. `feed` returns the events its bytes complete."""

    def __init__(self, mode: str = "M2") -> None:
        if mode not in MODES:
            raise ValueError(f"SL651 mode {mode!r} is not one of {MODES}")
        self.mode = mode
        self._buf = bytearray()
        self._partial: dict[tuple[str, int], _Partial] = {}
        self.garbage_bytes = 0  # skipped between frames (counted, not stored)
        self._ascii = False  # inside a garbage run that began with SOH

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buf
        buf += data
        out: list[Event] = []
        i = 0
        n = len(buf)
        while i < n:
            j = buf.find(_START, i)
            if j < 0:
                keep = 1 if buf[-1] == 0x7E else 0  # half a start marker may follow
                self._skip(buf, i, n - keep, out)
                i = n - keep
                break
            if j > i:
                self._skip(buf, i, j, out)
                i = j
            if n - i < _HEADER:
                break
            word = buf[i + 11] << 8 | buf[i + 12]
            if word >> 12 not in (0, 8) or buf[i + 13] not in (STX, SYN):
                self._skip(buf, i, i + 1, out)  # 7E7E inside garbage: not a header
                i += 1
                continue
            total = _OVERHEAD + (word & 0xFFF)
            if n - i < total:
                # A frame that is not complete yet, unless what looked like its header
                # was garbage and a whole frame already follows it.
                if self._whole_frame_after(buf, i + 1):
                    self._skip(buf, i, i + 1, out)
                    i += 1
                    continue
                break
            if buf[i + total - 3] not in (ETX, ETB):
                self._skip(buf, i, i + 1, out)
                i += 1
                continue
            frame = bytes(buf[i : i + total])
            if crc16_modbus(frame[:-2]) != frame[-2] << 8 | frame[-1] and self._whole_frame_after(
                buf, i + 1, i + total
            ):
                # Not a corrupted frame but garbage that looked like one, with a real
                # frame starting inside it.
                self._skip(buf, i, i + 1, out)
                i += 1
                continue
            i += total
            self._ascii = False
            out.extend(self._frame(frame))
        del buf[:i]
        return out

    def close(self) -> list[Event]:
        """The connection ended: multi-packet messages still incomplete are refused."""
        out: list[Event] = []
        for key in list(self._partial):
            out.append(self._incomplete(key, "the connection closed"))
        return out

    # ---- internals ----

    def _skip(self, buf: bytearray, start: int, end: int, out: list[Event]) -> None:
        if end <= start:
            return
        self.garbage_bytes += end - start
        if buf[start] == SOH_ASCII and not self._ascii:
            self._ascii = True
            out.append(
                Refused(
                    "",
                    bytes(buf[start:end]),
                    "unsupported",
                    "ASCII-encoded SL651 frame (SOH 01): this centre decodes the HEX/BCD form only",
                )
            )

    @staticmethod
    def _whole_frame_after(buf: bytearray, start: int, before: int | None = None) -> bool:
        """Whether a complete frame with a good CRC starts at or after `start` (and
        before `before`)."""
        n = len(buf)
        j = buf.find(_START, start, before)
        while j >= 0 and n - j >= _HEADER:
            word = buf[j + 11] << 8 | buf[j + 12]
            total = _OVERHEAD + (word & 0xFFF)
            if (
                word >> 12 in (0, 8)
                and n - j >= total
                and buf[j + total - 3] in (ETX, ETB)
                and crc16_modbus(bytes(buf[j : j + total - 2]))
                == buf[j + total - 2] << 8 | buf[j + total - 1]
            ):
                return True
            j = buf.find(_START, j + 1, before)
        return False

    def _frame(self, frame: bytes) -> list[Event]:
        station = frame[3:8].hex().upper()
        size = len(frame)
        got, want = frame[-2] << 8 | frame[-1], crc16_modbus(frame[:-2])
        if got != want:
            detail = f"CRC-16/MODBUS expected {want:04X}, frame has {got:04X} at offset {size - 2}"
            return [Refused(station, frame, "bad_checksum", detail)]
        if frame[11] >> 4 == 8:
            detail = "downlink frame (centre to station) from a station"
            return [Refused(station, frame, "unsupported", detail)]
        if frame[13] == STX:
            return [Uplink(station, frame, self._reply(frame, frame[14:16]))]
        return self._packet(station, frame)

    def _reply(self, frame: bytes, serial: bytes) -> Reply | None:
        function = frame[10]
        if self.mode == "M1" or function == KEEPALIVE:
            return None
        return Reply(frame[3:8], frame[2], frame[8:10], function, int.from_bytes(serial[:2], "big"))

    def _packet(self, station: str, frame: bytes) -> list[Event]:
        info = int.from_bytes(frame[14:17], "big")
        total, number = info >> 12, info & 0xFFF
        function = frame[10]
        if len(frame) < _OVERHEAD + 3 or not 1 <= number <= total:
            info_hex = frame[14:17].hex().upper()
            detail = f"multi-packet header {info_hex} at offset 14: packet {number} of {total}"
            return [Refused(station, frame, "bad_frame", detail)]
        out: list[Event] = []
        key = (station, function)
        partial = self._partial.get(key)
        restarted = number == 1 and partial is not None and partial.first not in (None, frame)
        if partial is not None and (partial.total != total or restarted):
            out.append(self._incomplete(key, f"packet {number} of {total} began another message"))
            partial = None
        if partial is None:
            partial = self._partial[key] = _Partial(total)
        partial.parts[number] = frame[17:-3]  # a packet sent again replaces its copy; a different
        # first packet begins another message (above)
        if frame not in partial.raw:
            partial.raw.append(frame)
        if number == 1:
            partial.first = frame
        if len(partial.parts) < total:
            return out
        del self._partial[key]
        body = b"".join(partial.parts[k] for k in range(1, total + 1))
        first = partial.first
        assert first is not None  # every number 1..total is in parts
        if len(body) > MAX_MESSAGE:
            detail = f"{total} packets reassemble to {len(body)} body bytes, more than one frame holds"
            out.append(Refused(station, b"".join(partial.raw), "unsupported", detail))
            return out
        whole = first[:11] + len(body).to_bytes(2, "big") + bytes((STX,)) + body + bytes((ETX,))
        whole += crc16_modbus(whole).to_bytes(2, "big")
        out.append(Uplink(station, whole, self._reply(first, body[:2])))
        return out

    def _incomplete(self, key: tuple[str, int], why: str) -> Refused:
        partial = self._partial.pop(key)
        have = ",".join(str(k) for k in sorted(partial.parts))
        detail = (
            f"multi-packet message (function {key[1]:02X}) incomplete: packets {have} of "
            f"{partial.total} arrived, then {why}"
        )
        return Refused(key[0], b"".join(partial.raw), "bad_frame", detail)
