"""SL 651-2014 (水文监测数据通信规约) HEX/BCD uplink frames from reservoir stations.

4G DTUs forward the RTU's frames unchanged onto `<prefix>/v1/reservoir/<device>/sl651`,
either as raw bytes or as ASCII hex text; both are accepted. This module owns the
frame layout, the element → metric mapping and `encode`, a pure frame builder for
tests and the fleet simulator.

Frame: `7E7E` · centre (1) · station address (5) · password (2) · function (1) ·
length word (2: high nibble 0 = uplink, low 12 bits = bytes between STX and ETX) ·
STX `02` · body · ETX `03` · CRC-16/MODBUS over everything before it, high byte first.
A report body: serial (2, binary) · send time (BCD yyMMddHHmmss) · `F1F1` station
address · station class · `F0F0` observation time (BCD yyMMddHHmm) · element groups
`[id][def][value]`, `def` = byte count << 3 | decimal places. The keep-alive (2F)
body is serial and send time only.

Decisions (⚠ = not verified against the standard's text):

- Identity: the topic's device id must equal the station address as 10 hex digits
  (BCD addresses are plain digits, e.g. `0052010001`); otherwise `schema`. A DTU
  configured with another station's topic (a copy-paste error in the field) would
  otherwise interleave two stations' data silently.
- Times are Beijing time (UTC+08:00). The observation time is the reading's ts. A
  keep-alive is stamped with `received_at`: it attests reception, and an RTU clock
  reset must not pin the registry's status time in the future or past.
- Values are BCD. Negative: a leading `FF` byte, counted in `def`'s byte count, with
  the magnitude in the remaining bytes ⚠ (what open implementations do). A value of
  all `AA` bytes means "sensor invalid" and is skipped ⚠.
- Element 20 (current rainfall, rain since the previous report of the station's
  rhythm) → `rain_1h_mm` in the hourly-rhythm reports 30/32/34/35, and
  `rain_5min_mm` in 33 (加报, sent on the 5-minute rhythm during rain) ⚠. An explicit
  1A (1-hour rainfall) or 22 (5-minute rainfall) in the same frame wins over 20.
- F4 (twelve 5-minute rainfalls of the hour ending at the observation time, 1 byte
  binary each, 0.1 mm, `FF` = no data): the last slot → `rain_5min_mm` and, when all
  twelve are valid, their sum → `rain_1h_mm`, each only where no explicit element
  gave that metric. One Decoded carries one ts, so the other eleven slots are not
  rows of their own; the hourly sum keeps their rain.
- 3B (reservoir upper level) → `level_m`; 39 (instantaneous level) → `level_m` only
  for station class 4B (reservoir) and only when 3B is absent.
- 58–5F water pressure 1–8 (kPa) → `seepage_pressure_m` at points P1–P8, as head of
  water: kPa ÷ 9.80665 (ρ = 1000 kg/m³), rounded to 0.1 mm.
- Elements without a column (1F daily rainfall, 30 total outflow, 3A downstream
  level, F5 relative levels, 45 status bits, …) and unknown ids are skipped by their
  `def` byte count: real RTUs send extra elements and that must not cost the frame.
  A report left with nothing to store is `unsupported`.
- Function 35 (manual entry) in the element layout decodes with `automatic=False`;
  its SL 330 text form (`F2F2` …) is `unsupported` ⚠. Multi-packet frames (STX 16 /
  ETX 17), downlink frames and functions other than 2F/30/32/33/34/35 are
  `unsupported`.
- Malformed frames are `bad_frame` with the field and offset; a syntactically valid
  but impossible date is `bad_timestamp`; a CRC mismatch is `bad_checksum`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final

from adapters._base import Adapter, Decoded, DecodeError, Row, Topic
from adapters.reservoir import RESERVOIR

__all__ = ["ADAPTER", "BEIJING", "Element", "crc16_modbus", "decode", "encode"]

BEIJING: Final = timezone(timedelta(hours=8), "CST")

START: Final = b"\x7e\x7e"
# ASCII hex text as some DTUs forward it, bytes optionally separated by spaces
_HEX_STARTS: Final = frozenset((b"7E7E", b"7e7e", b"7E 7E", b"7e 7e"))
STX, SYN, ETX, ETB = 0x02, 0x16, 0x03, 0x17
KEEPALIVE, MANUAL, EXTRA = 0x2F, 0x35, 0x33
_REPORTS: Final = frozenset((0x30, 0x32, EXTRA, 0x34, MANUAL))
_FUNCTION_NAMES: Final = {
    0x31: "even-interval report",
    0x36: "image report",
    0x37: "real-time data query response",
    0x38: "period data query response",
    0x39: "manual-entry query response",
    0x3A: "element query response",
}
STATION_RESERVOIR = 0x4B
_HEADER = 14  # 7E7E … STX
_OVERHEAD = 17  # header + ETX + CRC
_OBS_END = 37  # first element offset in a report
_KPA_PER_M: Final = 9.80665

_COL = RESERVOIR.metric_bounds
_WIDTH = len(RESERVOIR.metrics)
_RAIN5 = _COL["rain_5min_mm"][0]
_RAIN1H = _COL["rain_1h_mm"][0]
_RAINCUM = _COL["rain_cum_mm"][0]
_LEVEL = _COL["level_m"][0]
_BATTERY = _COL["battery_v"][0]
_SEEPAGE = "seepage_pressure_m"
_SEEPAGE_COL = _COL[_SEEPAGE][0]
_NAMES: Final = RESERVOIR.columns

# Plain elements: id -> (column, precedence). A higher precedence wins a column.
_PLAIN: Final = {
    0x1A: (_RAIN1H, 3),
    0x22: (_RAIN5, 3),
    0x26: (_RAINCUM, 3),
    0x38: (_BATTERY, 3),
    0x3B: (_LEVEL, 3),
}
_CURRENT_RAIN, _RAIN_5MIN_SERIES, _INSTANT_LEVEL = 0x20, 0xF4, 0x39
_PRESSURE = range(0x58, 0x60)

# The standard's N(digits, decimals) for the elements we map, used by `encode`.
_FORMAT: Final = {
    0x1A: (5, 1), 0x1F: (5, 1), 0x20: (5, 1), 0x22: (5, 1), 0x26: (6, 1),
    0x30: (9, 3), 0x38: (4, 2), 0x39: (7, 3), 0x3A: (7, 3), 0x3B: (7, 3),
    **{i: (5, 2) for i in _PRESSURE},
}  # fmt: skip


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: reflected polynomial 0xA001, initial value 0xFFFF."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def _bad(detail: str) -> DecodeError:
    return DecodeError("bad_frame", detail)


def _bcd(frame: bytes, start: int, n: int, what: str) -> int:
    digits = frame[start : start + n].hex()
    if not digits.isdigit():
        i = next(k for k in range(n) if not frame[start + k : start + k + 1].hex().isdigit())
        raise _bad(f"{what}: byte {frame[start + i]:02X} at offset {start + i} is not BCD")
    return int(digits)


def _time(frame: bytes, start: int, n: int, what: str) -> datetime:
    """BCD yyMMddHHmm[ss] in Beijing time."""
    _bcd(frame, start, n, what)
    d = frame[start : start + n].hex()
    try:
        return datetime(
            2000 + int(d[0:2]), int(d[2:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]),
            int(d[10:12]) if n == 6 else 0, tzinfo=BEIJING,
        )  # fmt: skip
    except ValueError:
        raise DecodeError("bad_timestamp", f"{what} {d} at offset {start} is no date") from None


def _unhex(payload: bytes) -> bytes:
    try:
        return bytes.fromhex(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"hex text payload is not hex: {exc}") from None


def _frame(payload: bytes) -> tuple[bytes, int]:
    """Check the envelope; return the frame and the body length."""
    head = payload[:5]
    if head[:4] in _HEX_STARTS or head in _HEX_STARTS or head[:1].isspace():
        head = payload.lstrip()[:5]
        if head[:4] in _HEX_STARTS or head in _HEX_STARTS:  # ASCII hex text
            payload = _unhex(payload.strip())
    if payload[:2] != START:
        raise _bad(f"start bytes at offset 0 are {payload[:2].hex().upper()}, expected 7E7E")
    size = len(payload)
    if size < _OVERHEAD:
        raise _bad(f"truncated: {size} bytes, a frame has at least {_OVERHEAD}")
    length = (payload[11] & 0x0F) << 8 | payload[12]
    if size != _OVERHEAD + length:
        raise _bad(
            f"length word at offset 11 gives {length} body bytes, so a "
            f"{_OVERHEAD + length}-byte frame; got {size} bytes"
        )
    got = payload[-2] << 8 | payload[-1]
    want = crc16_modbus(payload[:-2])
    if got != want:
        raise DecodeError(
            "bad_checksum",
            f"CRC-16/MODBUS expected {want:04X}, frame has {got:04X} at offset {size - 2}",
        )
    direction = payload[11] >> 4
    if direction == 8:
        raise DecodeError("unsupported", "downlink frame (centre to station) on an uplink topic")
    if direction != 0:
        raise _bad(f"direction nibble {direction:X} at offset 11 is neither 0 (up) nor 8 (down)")
    if payload[13] == SYN:
        raise DecodeError("unsupported", "multi-packet frame (STX 16) is not supported yet")
    if payload[13] != STX:
        raise _bad(f"STX at offset 13 is {payload[13]:02X}, expected 02")
    etx = payload[size - 3]
    if etx == ETB:
        raise DecodeError(
            "unsupported", "multi-packet frame (ETX 17, more follow) is not supported yet"
        )
    if etx != ETX:
        raise _bad(f"ETX at offset {size - 3} is {etx:02X}, expected 03")
    return payload, length


def _value(frame: bytes, p: int, n: int, dec: int, eid: int) -> float | None:
    """The BCD number of the element at p (its data at p+2, n bytes)."""
    start = p + 2
    data = frame[start : start + n]
    if data == b"\xaa" * n:
        return None
    sign = 1
    if data[0] == 0xFF:
        if n == 1:
            raise _bad(f"element {eid:02X} at offset {p}: sign byte FF without digits")
        sign, start, n = -1, start + 1, n - 1
    v = _bcd(frame, start, n, f"element {eid:02X} at offset {p}")
    return sign * v / 10**dec if dec else float(sign * v)


def _check(name: str, value: float, frame: bytes, p: int) -> None:
    col, lo, hi = _COL[name]
    if not lo <= value <= hi:
        unit = RESERVOIR.metrics[col].unit
        raise DecodeError(
            "out_of_range",
            f"{name}={value} outside {lo}..{hi} {unit} (element {frame[p]:02X} at offset {p})",
        )


def _elements(frame: bytes, end: int, function: int, station_class: int) -> list[Row]:
    main: list[float | None] = [None] * _WIDTH
    rank = [0] * _WIDTH  # precedence of the element that set each column
    where = [0] * _WIDTH  # its offset, for error details
    points: list[Row] = []
    seen: set[int] = set()
    skipped: list[str] = []
    rain20 = _RAIN5 if function == EXTRA else _RAIN1H
    p = _OBS_END
    while p < end:
        eid = frame[p]
        if p + 1 >= end:
            raise _bad(f"element {eid:02X} at offset {p} has no definition byte before ETX")
        d = frame[p + 1]
        if eid == 0xF0 and d == 0xF0:
            raise DecodeError("unsupported", f"second observation time (F0F0) at offset {p}")
        n, dec = d >> 3, d & 7
        if n == 0:
            raise _bad(f"element {eid:02X} at offset {p}: definition byte {d:02X} gives no data")
        if p + 2 + n > end:
            raise _bad(f"element {eid:02X} at offset {p} needs {n} data bytes, {end - p - 2} left")
        if eid in seen:
            raise _bad(f"element {eid:02X} repeated at offset {p}")
        seen.add(eid)
        col, prec = _PLAIN.get(eid, (-1, 0))
        if eid == _CURRENT_RAIN:
            col, prec = rain20, 2
        elif eid == _INSTANT_LEVEL and station_class == STATION_RESERVOIR:
            col, prec = _LEVEL, 2
        if col >= 0:
            v = _value(frame, p, n, dec, eid)
            if v is not None and prec > rank[col]:
                main[col], rank[col], where[col] = v, prec, p
        elif eid in _PRESSURE:
            v = _value(frame, p, n, dec, eid)
            if v is not None:
                head = round(v / _KPA_PER_M, 4)
                _check(_SEEPAGE, head, frame, p)
                row: list[float | None] = [None] * _WIDTH
                row[_SEEPAGE_COL] = head
                points.append((f"P{eid - 0x57}", row))
        elif eid == _RAIN_5MIN_SERIES:
            if n != 12:
                raise _bad(f"element F4 at offset {p}: 5-minute rainfalls need 12 bytes, not {n}")
            slots = frame[p + 2 : p + 14]
            if slots[11] != 0xFF and rank[_RAIN5] < 1:
                main[_RAIN5], rank[_RAIN5], where[_RAIN5] = slots[11] / 10, 1, p
            if 0xFF not in slots and rank[_RAIN1H] < 1:
                main[_RAIN1H], rank[_RAIN1H], where[_RAIN1H] = sum(slots) / 10, 1, p
        else:
            skipped.append(f"{eid:02X}")
        p += 2 + n
    rows: list[Row] = []
    if any(rank):
        for col, value in enumerate(main):
            if value is not None:
                _check(_NAMES[col], value, frame, where[col])
        rows.append(("", main))
    rows.extend(points)
    if not rows:
        raise DecodeError(
            "unsupported", f"report carries no element this class stores (skipped: {skipped})"
        )
    return rows


def decode(topic: Topic, payload: bytes, received_at: datetime) -> Decoded:
    frame, length = _frame(payload)
    address = frame[3:8].hex().upper()
    if topic.device_id != address:
        raise DecodeError(
            "schema",
            f"station address {address} at offset 3 is not the topic's device id "
            f"{topic.device_id!r}",
        )
    end = _HEADER + length  # offset of ETX
    function = frame[10]
    if length < 8:
        raise _bad(f"body of {length} bytes is shorter than serial and send time")
    serial = frame[14] << 8 | frame[15]
    _time(frame, 16, 6, "send time")
    if function == KEEPALIVE:
        return Decoded(
            RESERVOIR.name, topic.device_id, received_at, [], seq=serial, status="online"
        )
    if function not in _REPORTS:
        name = _FUNCTION_NAMES.get(function, "function without readings")
        raise DecodeError("unsupported", f"function {function:02X} ({name}) is not decoded")
    if function == MANUAL and frame[22:24] == b"\xf2\xf2":
        raise DecodeError("unsupported", "manual entry as SL 330 text (F2F2) is not decoded")
    if end < _OBS_END:
        raise _bad(f"report body of {length} bytes ends before the observation time")
    if frame[22:24] != b"\xf1\xf1":
        raise _bad(
            f"station address marker at offset 22 is {frame[22:24].hex().upper()}, expected F1F1"
        )
    if frame[24:29] != frame[3:8]:
        body_address = frame[24:29].hex().upper()
        raise _bad(f"station address {body_address} at offset 24 differs from header {address}")
    station_class = frame[29]
    if frame[30:32] != b"\xf0\xf0":
        raise _bad(
            f"observation time marker at offset 30 is {frame[30:32].hex().upper()}, expected F0F0"
        )
    ts = _time(frame, 32, 5, "observation time")
    rows = _elements(frame, end, function, station_class)
    return Decoded(
        RESERVOIR.name, topic.device_id, ts, rows, seq=serial, automatic=function != MANUAL
    )


@dataclass(frozen=True, slots=True)
class Element:
    """One element group for `encode`: a number in BCD with `size` bytes and
    `decimals` places (default: the standard's format for the id), or raw data bytes
    (e.g. F4's twelve binary slots)."""

    id: int
    value: float | bytes
    size: int | None = None
    decimals: int | None = None

    def encoded(self) -> bytes:
        if isinstance(self.value, bytes):
            n, dec, data = len(self.value), self.decimals or 0, self.value
        else:
            digits, std_dec = _FORMAT.get(self.id, (8, 2))
            dec = std_dec if self.decimals is None else self.decimals
            n = self.size if self.size is not None else (digits + 1) // 2
            magnitude = round(abs(self.value) * 10**dec)
            text = str(magnitude)
            if self.value < 0:
                n = max(n, (len(text) + 1) // 2 + 1)
                data = b"\xff" + bytes.fromhex(text.zfill(2 * (n - 1)))
            else:
                n = max(n, (len(text) + 1) // 2)
                data = bytes.fromhex(text.zfill(2 * n))
        if not 0 < n < 32 or not 0 <= dec < 8:
            raise ValueError(f"element {self.id:02X}: {n} bytes / {dec} decimals do not fit")
        return bytes((self.id, n << 3 | dec)) + data


def _bcd_time(t: datetime, seconds: bool) -> bytes:
    if t.tzinfo is None:
        raise ValueError("times must carry a UTC offset")
    fmt = "%y%m%d%H%M%S" if seconds else "%y%m%d%H%M"
    return bytes.fromhex(t.astimezone(BEIJING).strftime(fmt))


def encode(
    function: int,
    station: str,
    observed: datetime | None = None,
    elements: Iterable[Element] = (),
    serial: int = 1,
    *,
    sent: datetime | None = None,
    station_class: int = STATION_RESERVOIR,
    centre: int = 1,
    password: int = 0x1234,
    stx: int = STX,
    etx: int = ETX,
    downlink: bool = False,
) -> bytes:
    """Build an uplink frame (pure). `station` is 10 hex digits; `sent` defaults to
    `observed`. A keep-alive (2F) carries no observation time or elements."""
    addr = bytes.fromhex(station)
    if len(addr) != 5:
        raise ValueError(f"station address {station!r} is not 10 hex digits")
    when = sent if sent is not None else observed
    if when is None:
        raise ValueError("a frame needs a send time")
    body = serial.to_bytes(2, "big") + _bcd_time(when, True)
    if function != KEEPALIVE:
        if observed is None:
            raise ValueError("a report needs an observation time")
        body += b"\xf1\xf1" + addr + bytes((station_class,)) + b"\xf0\xf0"
        body += _bcd_time(observed, False) + b"".join(e.encoded() for e in elements)
    if len(body) > 0xFFF:
        raise ValueError(f"body of {len(body)} bytes exceeds the 12-bit length")
    word = (0x8000 if downlink else 0) | len(body)
    frame = (
        START + bytes((centre,)) + addr + password.to_bytes(2, "big") + bytes((function,))
        + word.to_bytes(2, "big") + bytes((stx,)) + body + bytes((etx,))
    )  # fmt: skip
    return frame + crc16_modbus(frame).to_bytes(2, "big")


ADAPTER: Final = Adapter(
    RESERVOIR,
    "sl651",
    (2014,),
    decode,
    f"{RESERVOIR.title}: SL 651-2014 HEX/BCD uplink frames forwarded by DTUs",
)
