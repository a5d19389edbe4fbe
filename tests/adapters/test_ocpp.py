"""The OCPP 1.6J adapter beyond its golden cases: conversions, phase and location
rules, edge cases of the frame, and robustness against arbitrary JSON."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import ADAPTERS, Decoded, DecodeError, Topic
from adapters.charger import CHARGER
from adapters.ocpp import ADAPTER, decode
from tests.adapters.golden import load_cases

TOPIC = Topic("gz", "charger", "CP-1", "ocpp")
RECEIVED = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)
TS = "2024-06-15T00:05:00Z"


def run(frame: object) -> Decoded:
    return decode(TOPIC, orjson.dumps(frame), RECEIVED)


def meter(*samples: dict[str, Any], connector: int = 1) -> Decoded:
    body = {"connectorId": connector, "meterValue": [{"timestamp": TS, "sampledValue": samples}]}
    return run([2, "1", "MeterValues", body])


def values(d: Decoded) -> dict[str, float]:
    assert len(d.rows) == 1
    _, row = d.rows[0]
    return {m.name: v for m, v in zip(CHARGER.metrics, row, strict=True) if v is not None}


def reason(frame: object) -> str:
    with pytest.raises(DecodeError) as info:
        run(frame)
    return info.value.reason


def test_registered_on_the_ocpp_channel() -> None:
    assert ADAPTER in ADAPTERS
    assert (ADAPTER.device_class, ADAPTER.channel) == (CHARGER, "ocpp")


@pytest.mark.parametrize(
    ("unit", "text", "celsius"),
    [
        ("Celsius", "41.5", 41.5),
        ("Celcius", "41.5", 41.5),
        ("Fahrenheit", "98.6", 37.0),
        ("K", "300.15", 27.0),
        (None, "-12", -12.0),
    ],
)
def test_temperature_units(unit: str | None, text: str, celsius: float) -> None:
    sv = {"value": text, "measurand": "Temperature"} | ({"unit": unit} if unit else {})
    assert values(meter(sv)) == {"temp_c": celsius}


@pytest.mark.parametrize("text", ["1e3", "1000", "1000.0", "+1000", ".1e4", "1000."])
def test_decimal_text_forms(text: str) -> None:
    assert values(meter({"value": text})) == {"energy_wh": 1000}


@pytest.mark.parametrize("text", ["NaN", "inf", "1_000", " 5", "", "0x10", "1e99999", "5 Wh"])
def test_non_decimal_text_is_rejected(text: str) -> None:
    assert (
        reason(
            [
                2,
                "1",
                "MeterValues",
                {
                    "connectorId": 1,
                    "meterValue": [{"timestamp": TS, "sampledValue": [{"value": text}]}],
                },
            ]
        )
        == "schema"
    )


def test_huge_decimal_is_out_of_range_not_a_crash() -> None:
    with pytest.raises(DecodeError) as info:
        meter({"value": "9" * 30 + "e999", "unit": "kWh"})
    assert info.value.reason == "out_of_range"


def test_phases_combine_only_without_a_total() -> None:
    phases = [{"value": "5000", "measurand": "Power.Active.Import", "phase": p} for p in ("L1", "L2")]
    assert values(meter(*phases)) == {"power_w": 10000}
    total = {"value": "9999", "measurand": "Power.Active.Import"}
    assert values(meter(*phases, total)) == {"power_w": 9999}


def test_voltage_phase_spellings_name_the_same_line() -> None:
    same = [{"value": "230", "measurand": "Voltage", "phase": p} for p in ("L1", "L1-N")]
    assert values(meter(*same)) == {"voltage_v": 230}
    differ = [{"value": v, "measurand": "Voltage", "phase": p} for v, p in (("230", "L1"), ("231", "L1-N"))]
    with pytest.raises(DecodeError, match="two different Voltage values"):
        meter(*differ)


def test_only_line_to_line_voltage_gives_no_reading() -> None:
    with pytest.raises(DecodeError) as info:
        meter({"value": "400", "measurand": "Voltage", "phase": "L1-L2"})
    assert info.value.reason == "unsupported"


def test_combined_phases_are_range_checked() -> None:
    big = [
        {"value": "500", "unit": "kW", "measurand": "Power.Active.Import", "phase": p}
        for p in ("L1", "L2", "L3")
    ]
    with pytest.raises(DecodeError, match="combined phases of power_w"):
        meter(*big)


def test_outlet_location_is_preferred() -> None:
    body = {"value": "60", "measurand": "Temperature", "location": "Body"}
    outlet = {"value": "35", "measurand": "Temperature"}
    assert values(meter(body, outlet)) == {"temp_c": 35}
    assert values(meter(body)) == {"temp_c": 60}


@pytest.mark.parametrize(
    ("field", "bad"),
    [("phase", "L4"), ("location", "Roof"), ("unit", "A"), ("format", "Hex"), ("measurand", 7)],
)
def test_bad_sample_fields_are_schema_errors(field: str, bad: object) -> None:
    with pytest.raises(DecodeError) as info:
        meter({"value": "1", field: bad})
    assert info.value.reason == "schema"
    assert f"sampledValue[0].{field}" in info.value.detail


def test_latest_usable_entry_is_taken() -> None:
    body = {
        "connectorId": 1,
        "meterValue": [
            {"timestamp": "2024-06-15T00:04:00Z", "sampledValue": [{"value": "10"}]},
            {
                "timestamp": "2024-06-15T00:05:00Z",
                "sampledValue": [{"value": "50.0", "measurand": "Frequency"}],
            },
        ],
    }
    d = run([2, "1", "MeterValues", body])
    assert d.ts == datetime(2024, 6, 15, 0, 4, tzinfo=UTC)
    assert values(d) == {"energy_wh": 10}


def test_older_entries_are_still_validated() -> None:
    body = {
        "connectorId": 1,
        "meterValue": [
            {"timestamp": "2024-06-15T00:01:00Z", "sampledValue": [{"value": "-5"}]},
            {"timestamp": TS, "sampledValue": [{"value": "10"}]},
        ],
    }
    assert reason([2, "1", "MeterValues", body]) == "out_of_range"


@pytest.mark.parametrize(
    ("connector", "why"),
    [
        (True, "schema"),
        (1.0, "schema"),
        (-1, "out_of_range"),
        (65, "out_of_range"),
        ("1", "schema"),
    ],
)
def test_connector_id(connector: object, why: str) -> None:
    body = {"connectorId": connector, "errorCode": "NoError", "status": "Available"}
    assert reason([2, "1", "StatusNotification", body]) == why


def test_status_timestamp_without_offset() -> None:
    body = {
        "connectorId": 1,
        "errorCode": "NoError",
        "status": "Available",
        "timestamp": "2024-06-15T00:05:00",
    }
    assert reason([2, "1", "StatusNotification", body]) == "bad_timestamp"


def test_start_transaction_needs_a_real_connector_and_timestamp() -> None:
    base = {"connectorId": 1, "idTag": "A", "meterStart": 5}
    assert reason([2, "1", "StartTransaction", base | {"connectorId": 0, "timestamp": TS}]) == (
        "out_of_range"
    )
    assert reason([2, "1", "StartTransaction", base]) == "bad_timestamp"
    assert reason([2, "1", "StartTransaction", base | {"meterStart": "5", "timestamp": TS}]) == ("schema")


def test_stop_transaction_is_checked_but_writes_no_row() -> None:
    body = {"transactionId": 1, "meterStop": -1, "timestamp": TS}
    assert reason([2, "1", "StopTransaction", body]) == "out_of_range"
    d = run([2, "1", "StopTransaction", body | {"meterStop": 7}])
    assert (d.rows, d.states, d.status, d.ts) == ([], [], "online", RECEIVED)


def test_boot_notification_hints_are_checked() -> None:
    body = {"chargePointVendor": "A\x00B", "chargePointModel": "M"}
    assert reason([2, "1", "BootNotification", body]) == "schema"
    assert reason([2, "1", "BootNotification", {"chargePointVendor": "A"}]) == "schema"


@pytest.mark.parametrize(
    "frame",
    [
        [],
        [2, "1", "Heartbeat"],
        [2, 1, "Heartbeat", {}],
        [2, "x" * 37, "Heartbeat", {}],
        [2, "1", None, {}],
        [2, "1", "Heartbeat", []],
        [True, "1", "Heartbeat", {}],
        [2.0, "1", "Heartbeat", {}],
        "Heartbeat",
        None,
    ],
)
def test_malformed_frames_are_schema_errors(frame: object) -> None:
    assert reason(frame) == "schema"


def test_central_system_calls_are_unsupported() -> None:
    assert reason([2, "1", "RemoteStartTransaction", {"idTag": "A"}]) == "unsupported"


def test_golden_payloads_follow_the_official_schemas() -> None:
    """Cross-check of the hand-written cases against the OCA schemas shipped by the
    `ocpp` package, when it is installed (it is not a dependency of the service)."""
    if importlib.util.find_spec("ocpp") is None:
        pytest.skip("the ocpp package is not installed")
    from importlib.resources import files

    import jsonschema

    schemas = files("ocpp") / "v16" / "schemas"
    checked = 0
    for case in load_cases():
        if case.path.parent.name != "ocpp" or case.expected is None:
            continue
        frame = json.loads(case.payload)
        schema = json.loads((schemas / f"{frame[2]}.json").read_text())
        jsonschema.Draft4Validator(schema).validate(frame[3])
        checked += 1
    assert checked >= 10


# Robustness: nothing but DecodeError, whatever the JSON.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_text_or_any = (
    st.sampled_from(
        [
            "",
            "1",
            "-1",
            "1e3",
            "NaN",
            "12.5",
            "L1",
            "L1-N",
            "N",
            "kWh",
            "Wh",
            "K",
            "Fahrenheit",
            "Outlet",
            "EV",
            "SignedData",
            "Raw",
            "Voltage",
            "SoC",
            "Temperature",
            "Current.Import",
            "Power.Active.Import",
            "Energy.Active.Import.Register",
            TS,
            "2024-06-15",
        ]
    )
    | _json
)
_sample = st.dictionaries(
    st.sampled_from(["value", "measurand", "unit", "phase", "location", "format", "context"]),
    _text_or_any,
    max_size=7,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "connectorId": st.integers(-2, 70) | _json,
        "status": st.sampled_from(["Charging", "Faulted", "x"]) | _json,
        "errorCode": st.sampled_from(["NoError", "GroundFailure", "y"]) | _json,
        "timestamp": st.sampled_from([TS, "2024-06-15T00:05:00", "bad"]) | _json,
        "meterStart": st.integers(-5, 10**14) | _json,
        "meterStop": st.integers(-5, 10**14) | _json,
        "chargePointVendor": _text_or_any,
        "chargePointModel": _text_or_any,
        "meterValue": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "timestamp": st.sampled_from([TS, "2024-06-15T00:01:00+00:00"]) | _json,
                    "sampledValue": st.lists(_sample, max_size=4) | _json,
                },
            ),
            max_size=3,
        )
        | _json,
    },
)
_actions = st.sampled_from(
    [
        "StatusNotification",
        "MeterValues",
        "StartTransaction",
        "StopTransaction",
        "BootNotification",
        "Heartbeat",
        "Authorize",
    ]
)
_frames = st.tuples(
    st.sampled_from([2, 3, 4, 5]) | _json,
    st.text(max_size=40) | _json,
    _actions | _json,
    _bodies | _json,
).map(list)


def _never_raises_else(payload: bytes) -> None:
    try:
        d = decode(TOPIC, payload, RECEIVED)
    except DecodeError as exc:
        assert exc.reason in {"bad_json", "schema", "out_of_range", "bad_timestamp", "unsupported"}
        return
    for point, row in d.rows:
        assert point.isdigit()
        for m, v in zip(CHARGER.metrics, row, strict=True):
            assert v is None or m.minimum <= v <= m.maximum


@settings(max_examples=200, deadline=None)
@given(_json)
def test_arbitrary_json_only_raises_decode_error(doc: object) -> None:
    _never_raises_else(json.dumps(doc).encode())


@settings(max_examples=250, deadline=None)
@given(_frames | st.lists(_json, max_size=5))
def test_arbitrary_frames_only_raise_decode_error(frame: object) -> None:
    _never_raises_else(json.dumps(frame).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_decode_error(payload: bytes) -> None:
    _never_raises_else(payload)
