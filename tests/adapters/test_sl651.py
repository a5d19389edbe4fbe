"""The SL 651-2014 adapter: CRC, BCD, encode/decode round trips and robustness.
Frame-level cases (errors, keep-alive, manual entry, ...) are golden files in
testdata/sl651/."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import ADAPTERS, DecodeError, Topic
from adapters.reservoir import RESERVOIR
from adapters.sl651 import ADAPTER, BEIJING, Element, crc16_modbus, decode, encode
from adapters.sl651 import _bcd as bcd
from adapters.sl651 import _value as bcd_value

STATION = "0052010001"
TOPIC = Topic("gz", "reservoir", STATION, "sl651")
RECEIVED = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)
OBS = datetime(2024, 6, 15, 8, 0, tzinfo=BEIJING)
DOMAIN = bytes.fromhex(
    "7E7E010052010001123432002B020001240615080005F1F100520100014BF0F0240615080020190000"
    "0526190012343B230105234538121235038AEF"
)
COL = {name: i for i, name in enumerate(RESERVOIR.columns)}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_registered() -> None:
    assert ADAPTER in ADAPTERS
    assert (ADAPTER.device_class.name, ADAPTER.channel) == ("reservoir", "sl651")


def test_crc_known_vectors() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37
    assert crc16_modbus(DOMAIN[:-2]) == 0x8AEF
    assert crc16_modbus(b"") == 0xFFFF


def test_bcd() -> None:
    assert bcd(b"\x01\x05\x23\x45", 0, 4, "x") == 1052345
    assert bcd(b"\x99", 0, 1, "x") == 99
    with pytest.raises(DecodeError) as info:
        bcd(b"\x00\x1a", 0, 2, "level")
    assert info.value.reason == "bad_frame"
    assert "byte 1A at offset 1" in info.value.detail


def test_bcd_sign_and_invalid_marker() -> None:
    # [id][def][data]: def 0x1A = 3 bytes, 2 decimals
    assert bcd_value(b"\x58\x1a\xff\x03\x20", 0, 3, 2, 0x58) == -3.2
    assert bcd_value(b"\x58\x1a\x00\x03\x20", 0, 3, 2, 0x58) == 3.2
    assert bcd_value(b"\x58\x1a\xaa\xaa\xaa", 0, 3, 2, 0x58) is None
    with pytest.raises(DecodeError):
        bcd_value(b"\x58\x08\xff", 0, 1, 0, 0x58)


def test_encode_reproduces_the_domain_example() -> None:
    elements = [
        Element(0x20, 0.5),
        Element(0x26, 123.4),
        Element(0x3B, 1052.345),
        Element(0x38, 12.35),
    ]
    frame = encode(0x32, STATION, OBS, elements, 1, sent=OBS + timedelta(seconds=5))
    assert frame == DOMAIN


def test_domain_example_decodes() -> None:
    d = decode(TOPIC, DOMAIN, RECEIVED)
    assert d.ts == datetime(2024, 6, 15, 0, 0, tzinfo=UTC)
    assert d.seq == 1 and d.automatic and d.status is None
    [(point, values)] = d.rows
    assert point == ""
    assert values[COL["rain_1h_mm"]] == 0.5
    assert values[COL["rain_cum_mm"]] == 123.4
    assert values[COL["level_m"]] == 1052.345
    assert values[COL["battery_v"]] == 12.35


def test_hex_text_forms_decode_alike() -> None:
    want = decode(TOPIC, DOMAIN, RECEIVED)
    for text in (DOMAIN.hex(), DOMAIN.hex().upper(), DOMAIN.hex(" "), " " + DOMAIN.hex() + "\r\n"):
        assert decode(TOPIC, text.encode(), RECEIVED) == want


def test_keepalive_is_liveness() -> None:
    frame = encode(0x2F, STATION, sent=OBS, serial=9)
    d = decode(TOPIC, frame, RECEIVED)
    assert (d.rows, d.status, d.seq, d.ts) == ([], "online", 9, RECEIVED)


def test_manual_entry_is_not_automatic() -> None:
    d = decode(TOPIC, encode(0x35, STATION, OBS, [Element(0x3B, 1052.3)]), RECEIVED)
    assert not d.automatic


def test_encode_rejects_what_cannot_be_framed() -> None:
    with pytest.raises(ValueError):
        encode(0x32, "123", OBS)
    with pytest.raises(ValueError):
        encode(0x32, STATION, OBS.replace(tzinfo=None))
    with pytest.raises(ValueError):
        Element(0x3B, 10.0**70).encoded()


# Values on each element's resolution, inside the reservoir metric bounds.
def _scaled(lo: int, hi: int, decimals: int) -> st.SearchStrategy[float]:
    return st.integers(lo, hi).map(lambda i: i / 10**decimals)


ELEMENTS = {
    0x20: ("rain_1h_mm", _scaled(0, 1500, 1)),
    0x22: ("rain_5min_mm", _scaled(0, 254, 1)),
    0x26: ("rain_cum_mm", _scaled(0, 999999, 1)),
    0x3B: ("level_m", _scaled(-500_000, 9_000_000, 3)),
    0x38: ("battery_v", _scaled(0, 3000, 2)),
}
PRESSURES = st.dictionaries(
    st.integers(0x58, 0x5F), _scaled(-9800, 294000, 2), max_size=8
)  # kPa: about -10..300 m of head


@FUZZ
@given(
    plain=st.fixed_dictionaries({}, optional={k: v for k, (_, v) in ELEMENTS.items()}),
    pressures=PRESSURES,
    serial=st.integers(0, 0xFFFF),
    minutes=st.integers(-600, 4),
)
def test_round_trip(
    plain: dict[int, float], pressures: dict[int, float], serial: int, minutes: int
) -> None:
    if not plain and not pressures:
        plain = {0x20: 0.0}
    observed = (RECEIVED + timedelta(minutes=minutes)).replace(second=0)
    elements = [Element(i, v) for i, v in (plain | pressures).items()]
    d = decode(TOPIC, encode(0x34, STATION, observed, elements, serial), RECEIVED)
    assert d.ts == observed and d.seq == serial
    rows = dict(d.rows)
    if plain:
        got = {
            name: v
            for name, v in zip(RESERVOIR.columns, rows.pop(""), strict=True)
            if v is not None
        }
        assert got == {ELEMENTS[i][0]: v for i, v in plain.items()}
    heads = {p: values[COL["seepage_pressure_m"]] for p, values in rows.items()}
    assert heads == {f"P{i - 0x57}": round(v / 9.80665, 4) for i, v in pressures.items()}


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(payload: bytes) -> None:
    for candidate in (payload, b"\x7e\x7e" + payload, payload.hex().encode()):
        with contextlib.suppress(DecodeError):
            decode(TOPIC, candidate, RECEIVED)


def _with_crc(frame: bytes) -> bytes:
    return frame[:-2] + crc16_modbus(frame[:-2]).to_bytes(2, "big")


@FUZZ
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(("set", "insert", "delete")), st.integers(0, 200), st.integers(0, 255)
        ),
        min_size=1,
        max_size=4,
    ),
    fix_length=st.booleans(),
)
def test_mutated_frames_only_raise_decode_error(
    edits: list[tuple[str, int, int]], fix_length: bool
) -> None:
    base = encode(
        0x34, STATION, OBS,
        [Element(0xF4, bytes(range(12))), Element(0x20, 1.2), Element(0x39, 1052.4),
         Element(0x58, 120.5), Element(0x45, b"\x00\x00\x00\x01")],
    )  # fmt: skip
    frame = bytearray(base)
    for op, at, value in edits:
        at %= len(frame)
        if op == "set":
            frame[at] = value
        elif op == "insert":
            frame.insert(at, value)
        elif len(frame) > 1:
            del frame[at]
    if fix_length and len(frame) >= 17:
        frame[11:13] = (len(frame) - 17).to_bytes(2, "big")
    # a valid CRC takes the mutation past the envelope into the body parser
    for candidate in (bytes(frame), _with_crc(bytes(frame))):
        with contextlib.suppress(DecodeError):
            decode(TOPIC, candidate, RECEIVED)
