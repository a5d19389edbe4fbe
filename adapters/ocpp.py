"""OCPP 1.6J frames forwarded by a gateway onto `<prefix>/v1/charger/<charge point id>/ocpp`.

Owns the mapping from charge-point → central-system CALLs to charger readings:

- StatusNotification → states `status` and `error_code` at point = connectorId
  (`"0"` is the whole charge point). `timestamp` is optional in OCPP 1.6; without
  it the reception time stands in.
- MeterValues → metrics at point = connectorId, from the latest `meterValue` entry
  (entries sharing that timestamp are merged). A Decoded has one timestamp; older
  entries are checked but dropped — the energy register is cumulative, so only the
  resolution of gauge history is lost, never energy.
- StartTransaction → `energy_wh` = meterStart at its connector and timestamp.
- StopTransaction, BootNotification, Heartbeat → liveness (`status="online"` at
  reception time; Boot also carries vendor, model, serial number and firmware
  version hints). StopTransaction names no
  connector in OCPP 1.6 (nor do its transactionData samples), and a pure decoder
  cannot map transactionId back to one; writing meterStop to the charge-point row
  would interleave the registers of different connectors there, so it is not written.
- Authorize, DataTransfer, Diagnostics/FirmwareStatusNotification → liveness only.
- Any other action, CALLRESULT and CALLERROR → DecodeError("unsupported").

Sampled values: `format` SignedData is skipped; measurands other than the six below
are ignored. Per metric, one location is used (Outlet — the default — then Inlet,
Cable, Body, EV); within it the phase-less value wins, else the line phases
(L1/L2/L3 or L1-N/L2-N/L3-N) are combined: energy and power summed, voltage
averaged, current, SoC and temperature the maximum. Neutral and line-to-line
phases are ignored. Values are range-checked before and after combining.

Validation is by hand, of what the readings depend on: the official JSON schemas
cost several times the whole decode and still leave ranges, units and timestamps to
check here. Keys this adapter does not read are not checked: the central system,
not a passive tap, is the party that answers a malformed frame, and dead-lettering
a frame it accepted would only lose data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Final

import orjson

from adapters._base import Adapter, Decoded, DecodeError, Row, StateEvent, Topic
from adapters._jsonv1 import check_meta
from adapters.charger import CHARGER

CALL: Final = 2
CALLRESULT: Final = 3
CALLERROR: Final = 4

_WIDTH: Final = len(CHARGER.metrics)
_BOUNDS: Final = CHARGER.metric_bounds
_STATUS: Final = CHARGER.state_index["status"].values
_ERROR_CODE: Final = CHARGER.state_index["error_code"].values
_MAX_CONNECTOR: Final = int(CHARGER.meta_index["connectors"].maximum or 64)
_MAX_ID_LEN: Final = 36  # OCPP-J uniqueId

# OCPP decimal text: no NaN, infinities, underscores or padding that float() admits.
_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?")

_Convert = Callable[[str], float]
_Combine = Callable[[list[float]], float]


def _same(text: str) -> float:
    return float(text)


def _kilo(text: str) -> float:
    return float(Decimal(text) * 1000)  # decimal scaling: "12.345" kWh is 12345 Wh exactly


def _fahrenheit(text: str) -> float:
    return round((float(text) - 32) * 5 / 9, 3)


def _kelvin(text: str) -> float:
    return float(Decimal(text) - Decimal("273.15"))


def _sum(xs: list[float]) -> float:
    return sum(xs)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


# measurand → (metric, default unit, {unit: to metric unit}, how phases combine)
_MEASURANDS: Final[dict[str, tuple[str, str, dict[str, _Convert], _Combine]]] = {
    "Energy.Active.Import.Register": ("energy_wh", "Wh", {"Wh": _same, "kWh": _kilo}, _sum),
    "Power.Active.Import": ("power_w", "W", {"W": _same, "kW": _kilo}, _sum),
    "Current.Import": ("current_a", "A", {"A": _same}, max),
    "Voltage": ("voltage_v", "V", {"V": _same}, _mean),
    "SoC": ("soc_pct", "Percent", {"Percent": _same}, max),
    "Temperature": (
        "temp_c",
        "Celsius",
        # "Celcius" is the spelling of the OCPP 1.6 schemas themselves.
        {"Celsius": _same, "Celcius": _same, "Fahrenheit": _fahrenheit, "K": _kelvin},
        max,
    ),
}
_COMBINERS: Final = {spec[0]: spec[3] for spec in _MEASURANDS.values()}
_DEFAULT_MEASURAND: Final = "Energy.Active.Import.Register"
_LOCATION_RANK: Final = {"Outlet": 0, "Inlet": 1, "Cable": 2, "Body": 3, "EV": 4}
# phase → the line it measures; None: the phase is known but not combined.
_PHASES: Final[dict[str, str | None]] = {
    "L1": "L1",
    "L2": "L2",
    "L3": "L3",
    "L1-N": "L1",
    "L2-N": "L2",
    "L3-N": "L3",
    "N": None,
    "L1-L2": None,
    "L2-L3": None,
    "L3-L1": None,
}
_FORMATS: Final = ("Raw", "SignedData")


def _parse_ts(value: object, where: str) -> datetime:
    if value is None:
        raise DecodeError("bad_timestamp", f"{where} is missing")
    if type(value) is not str:
        raise DecodeError("bad_timestamp", f"{where} must be RFC 3339 text, not {value!r:.40}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise DecodeError("bad_timestamp", f"{where} {value!r:.40} is not RFC 3339") from None
    if ts.tzinfo is None:
        raise DecodeError("bad_timestamp", f"{where} {value!r:.40} has no UTC offset")
    return ts


def _connector(payload: dict[str, object], lowest: int = 0) -> str:
    c = payload.get("connectorId")
    if type(c) is not int:
        raise DecodeError("schema", f"connectorId must be an integer, not {c!r:.40}")
    if not lowest <= c <= _MAX_CONNECTOR:
        raise DecodeError("out_of_range", f"connectorId {c} outside {lowest}..{_MAX_CONNECTOR}")
    return str(c)


def _check(metric: str, value: float, where: str) -> None:
    _, lo, hi = _BOUNDS[metric]
    if not lo <= value <= hi:
        raise DecodeError("out_of_range", f"{where}={value} outside {lo}..{hi}")


# One meterValue entry's samples: metric → location rank → phase ("" = total) → value.
_Samples = dict[str, dict[int, dict[str, float]]]


def _sample(sv: object, entry: str, i: int, into: _Samples) -> None:
    # Error details name the sample; the name is built only when one is raised.
    if type(sv) is not dict:
        raise DecodeError("schema", f"{entry}.sampledValue[{i}] must be an object")
    fmt = sv.get("format", "Raw")
    if fmt not in _FORMATS:
        raise DecodeError("schema", f"{entry}.sampledValue[{i}].format {fmt!r:.40} is not Raw or SignedData")
    if fmt == "SignedData":
        return  # an opaque signed blob, not a number
    measurand = sv.get("measurand", _DEFAULT_MEASURAND)
    if type(measurand) is not str:
        raise DecodeError("schema", f"{entry}.sampledValue[{i}].measurand must be text")
    spec = _MEASURANDS.get(measurand)
    if spec is None:
        return  # Frequency, Current.Offered, Power.Offered, …: not charger metrics
    metric, default_unit, units, _ = spec
    unit = sv.get("unit", default_unit)
    convert = units.get(unit) if type(unit) is str else None
    if convert is None:
        raise DecodeError(
            "schema", f"{entry}.sampledValue[{i}].unit {unit!r:.40} is not one of {sorted(units)}"
        )
    location = sv.get("location", "Outlet")
    rank = _LOCATION_RANK.get(location) if type(location) is str else None
    if rank is None:
        raise DecodeError(
            "schema", f"{entry}.sampledValue[{i}].location {location!r:.40} is not an OCPP location"
        )
    phase = sv.get("phase")
    if phase is None:
        line = ""
    elif type(phase) is str and phase in _PHASES:
        line_or_none = _PHASES[phase]
        if line_or_none is None:
            return  # neutral or line-to-line: not comparable with the per-line values
        line = line_or_none
    else:
        raise DecodeError("schema", f"{entry}.sampledValue[{i}].phase {phase!r:.40} is not an OCPP phase")
    text = sv.get("value")
    if type(text) is not str:
        raise DecodeError("schema", f"{entry}.sampledValue[{i}].value must be text, not {text!r:.40}")
    if len(text) > 40 or _NUMBER.fullmatch(text) is None:
        raise DecodeError("schema", f"{entry}.sampledValue[{i}].value {text!r:.40} is not a decimal number")
    value = convert(text)
    _, lo, hi = _BOUNDS[metric]
    if not lo <= value <= hi:
        where = f"{entry}.sampledValue[{i}] {measurand}"
        raise DecodeError("out_of_range", f"{where}={value} outside {lo}..{hi}")
    lines = into.setdefault(metric, {}).setdefault(rank, {})
    if lines.setdefault(line, value) != value:
        raise DecodeError(
            "schema", f"{entry}.sampledValue[{i}]: two different {measurand} values for one phase"
        )


def _meter_value(mv: object, where: str, into: _Samples) -> datetime:
    if type(mv) is not dict:
        raise DecodeError("schema", f"{where} must be an object")
    ts = _parse_ts(mv.get("timestamp"), f"{where}.timestamp")
    svs = mv.get("sampledValue")
    if type(svs) is not list:
        raise DecodeError("schema", f"{where}.sampledValue must be an array")
    for i, sv in enumerate(svs):
        _sample(sv, where, i, into)
    return ts


def _combine(samples: _Samples) -> list[float | None]:
    values: list[float | None] = [None] * _WIDTH
    for metric, by_location in samples.items():
        lines = by_location[min(by_location)]
        total = lines.get("")
        if total is None:
            total = _COMBINERS[metric](list(lines.values()))
            _check(metric, total, f"combined phases of {metric}")
        values[_BOUNDS[metric][0]] = total
    return values


def _meter_values(entries: object, key: str, point: str, topic: Topic) -> Decoded | None:
    """The latest usable entries of a meterValue array as one row; None if none is usable."""
    if type(entries) is not list or not entries:
        raise DecodeError("schema", f"{key} must be a non-empty array")
    latest: datetime | None = None
    merged: _Samples = {}
    for i, mv in enumerate(entries):
        samples: _Samples = {}
        ts = _meter_value(mv, f"{key}[{i}]", samples)
        if not samples:
            continue  # only signed or unsupported values
        if latest is None or ts > latest:
            latest, merged = ts, samples
        elif ts == latest:
            for metric, by_location in samples.items():
                into = merged.setdefault(metric, {})
                for rank, lines in by_location.items():
                    have = into.setdefault(rank, {})
                    for line, value in lines.items():
                        if have.setdefault(line, value) != value:
                            raise DecodeError("schema", f"{key}[{i}]: two different {metric} values at {ts}")
    if not merged or latest is None:
        return None
    rows: list[Row] = [(point, _combine(merged))]
    return Decoded(CHARGER.name, topic.device_id, latest, rows)


def _status_notification(p: dict[str, object], topic: Topic, received_at: datetime) -> Decoded:
    point = _connector(p)
    status, error = p.get("status"), p.get("errorCode")
    if type(status) is not str:
        raise DecodeError("schema", f"status must be text, not {status!r:.40}")
    if type(error) is not str:
        raise DecodeError("schema", f"errorCode must be text, not {error!r:.40}")
    if status not in _STATUS:
        raise DecodeError("out_of_range", f"status {status!r:.40} is not an OCPP 1.6 status")
    if error not in _ERROR_CODE:
        raise DecodeError("out_of_range", f"errorCode {error!r:.40} is not an OCPP 1.6 code")
    raw_ts = p.get("timestamp")
    ts = received_at if raw_ts is None else _parse_ts(raw_ts, "timestamp")
    states: list[StateEvent] = [(point, "status", status), (point, "error_code", error)]
    return Decoded(CHARGER.name, topic.device_id, ts, [], states)


def _meter_values_call(p: dict[str, object], topic: Topic, received_at: datetime) -> Decoded:
    point = _connector(p)
    decoded = _meter_values(p.get("meterValue"), "meterValue", point, topic)
    if decoded is None:
        raise DecodeError("unsupported", "MeterValues carries no supported raw measurand")
    return decoded


def _start_transaction(p: dict[str, object], topic: Topic, received_at: datetime) -> Decoded:
    point = _connector(p, lowest=1)
    ts = _parse_ts(p.get("timestamp"), "timestamp")
    meter = p.get("meterStart")
    if type(meter) is not int and type(meter) is not float:
        raise DecodeError("schema", f"meterStart must be a number of Wh, not {meter!r:.40}")
    _check("energy_wh", meter, "meterStart")
    values: list[float | None] = [None] * _WIDTH
    values[_BOUNDS["energy_wh"][0]] = meter
    return Decoded(CHARGER.name, topic.device_id, ts, [(point, values)])


def _stop_transaction(p: dict[str, object], topic: Topic, received_at: datetime) -> Decoded:
    # Checked so that a broken stop is dead-lettered, though nothing is written (see top).
    _parse_ts(p.get("timestamp"), "timestamp")
    meter = p.get("meterStop")
    if type(meter) is not int and type(meter) is not float:
        raise DecodeError("schema", f"meterStop must be a number of Wh, not {meter!r:.40}")
    _check("energy_wh", meter, "meterStop")
    return Decoded(CHARGER.name, topic.device_id, received_at, [], status="online")


def _boot_notification(p: dict[str, object], topic: Topic, received_at: datetime) -> Decoded:
    vendor, model = p.get("chargePointVendor"), p.get("chargePointModel")
    if type(vendor) is not str or type(model) is not str:
        raise DecodeError("schema", "chargePointVendor and chargePointModel must be text")
    hints: dict[str, object] = {"vendor": vendor, "model": model}
    for key, field in (("chargePointSerialNumber", "serial_number"), ("firmwareVersion", "firmware_version")):
        value = p.get(key)
        if value is not None:
            if type(value) is not str:
                raise DecodeError("schema", f"{key} must be text, not {value!r:.40}")
            hints[field] = value
    meta = check_meta(CHARGER, hints)
    return Decoded(CHARGER.name, topic.device_id, received_at, [], meta=meta, status="online")


def _heartbeat(p: dict[str, object], topic: Topic, received_at: datetime) -> Decoded:
    return Decoded(CHARGER.name, topic.device_id, received_at, [], status="online")


_ACTIONS: Final[dict[str, Callable[[dict[str, object], Topic, datetime], Decoded]]] = {
    "StatusNotification": _status_notification,
    "MeterValues": _meter_values_call,
    "StartTransaction": _start_transaction,
    "StopTransaction": _stop_transaction,
    "BootNotification": _boot_notification,
    "Heartbeat": _heartbeat,
}


# Charge point → central system calls that carry no readings: liveness only.
_LIVENESS_ACTIONS = frozenset(
    ("Authorize", "DataTransfer", "DiagnosticsStatusNotification", "FirmwareStatusNotification")
)


def decode(topic: Topic, payload: bytes, received_at: datetime) -> Decoded:
    try:
        frame = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("bad_json", str(exc)) from None
    if type(frame) is not list or not frame:
        raise DecodeError("schema", "an OCPP-J frame must be a non-empty JSON array")
    kind = frame[0]
    if type(kind) is not int or kind not in (CALL, CALLRESULT, CALLERROR):
        raise DecodeError("schema", f"OCPP-J message type id {kind!r:.40} is not 2, 3 or 4")
    if kind != CALL:
        # Central-system answers: a bridge forwarding both directions echoes them.
        raise DecodeError("unsupported", f"OCPP-J message type {kind} carries no readings")
    if len(frame) != 4:
        raise DecodeError("schema", f"an OCPP-J CALL has 4 elements, not {len(frame)}")
    _, unique_id, action, body = frame
    if type(unique_id) is not str or not 0 < len(unique_id) <= _MAX_ID_LEN:
        raise DecodeError("schema", "OCPP-J uniqueId must be text of 1 to 36 characters")
    if type(action) is not str:
        raise DecodeError("schema", f"OCPP-J action must be text, not {action!r:.40}")
    handler = _ACTIONS.get(action)
    if handler is None:
        if action in _LIVENESS_ACTIONS:
            # Normal charge-point traffic with no readings: it still shows the charger
            # is alive, and dead-lettering it would bury real errors.
            return Decoded(CHARGER.name, topic.device_id, received_at, [], status="online")
        raise DecodeError("unsupported", f"OCPP action {action!r:.40} carries no readings")
    if type(body) is not dict:
        raise DecodeError("schema", f"{action} payload must be a JSON object")
    return handler(body, topic, received_at)


ADAPTER = Adapter(CHARGER, "ocpp", (16,), decode, f"{CHARGER.title}: OCPP 1.6J frames")
