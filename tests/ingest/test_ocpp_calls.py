"""OCPP 1.6J call handling: the envelope, schema validation with the standard's
CallError codes, and the answers."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sources.ocpp_calls import Call, CallErrorInfo, answer, call_error, call_result, parse

METER = {
    "connectorId": 1,
    "meterValue": [{"timestamp": "2026-07-01T08:00:00Z", "sampledValue": [{"value": "1234.5"}]}],
}


def frame(action: str, payload: object, uid: object = "u1") -> bytes:
    return orjson.dumps([2, uid, action, payload])


def test_a_valid_call() -> None:
    call = parse(frame("MeterValues", METER))
    assert call == Call("u1", "MeterValues", METER)


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (b"[2, \"u1\", \"Heartbeat\", {", "FormationViolation", "bad_json"),
        (b'{"a": 1}', "FormationViolation", "schema"),
        (b'[2, "u1", "Heartbeat"]', "ProtocolError", "schema"),
        (frame("Frobnicate", {}), "NotImplemented", "unsupported"),
        (frame("Reset", {"type": "Hard"}), "NotSupported", "unsupported"),
        (frame("MeterValues", {"connectorId": "one", "meterValue": []}), "TypeConstraintViolation", "schema"),
        (frame("MeterValues", {"meterValue": []}), "OccurenceConstraintViolation", "schema"),
        (frame("Heartbeat", {"extra": 1}), "FormationViolation", "schema"),
        (
            frame("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}),
            "PropertyConstraintViolation",
            "schema",
        ),
    ],
)
def test_refusals_name_the_standards_error(data: bytes, code: str, reason: str) -> None:
    err = parse(data)
    assert isinstance(err, CallErrorInfo)
    assert (err.code, err.reason) == (code, reason)
    assert err.unique_id == ("u1" if b'"u1"' in data else None)


def test_answers_from_the_charge_point_are_not_calls() -> None:
    assert parse(b'[3, "x", {}]') is None
    assert parse(b'[4, "x", "GenericError", "", {}]') is None


def test_results_and_errors_encode_as_ocpp_j() -> None:
    now = datetime(2026, 7, 1, 0, 0, 1, 250000, tzinfo=UTC)
    boot = Call("b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    res = orjson.loads(call_result("b", "BootNotification", answer(boot, heartbeat_interval_s=300), now))
    assert res == [3, "b", {"status": "Accepted", "interval": 300, "currentTime": "2026-07-01T00:00:01.250Z"}]
    start = Call("s", "StartTransaction", {})
    assert answer(start, heartbeat_interval_s=1, transaction_id=7) == {
        "transactionId": 7,
        "idTagInfo": {"status": "Accepted"},
    }
    dt = Call("d", "DataTransfer", {"vendorId": "acme"})
    assert answer(dt, heartbeat_interval_s=1)["status"] == "UnknownVendorId"
    assert answer(dt, heartbeat_interval_s=1, vendors=frozenset({"acme"}))["status"] == "Accepted"
    err = parse(frame("Frobnicate", {}, "e1"))
    assert isinstance(err, CallErrorInfo)
    assert orjson.loads(call_error(err))[:3] == [4, "e1", "NotImplemented"]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_call_a_refusal_or_an_answer(data: bytes) -> None:
    assert parse(data) is None or isinstance(parse(data), Call | CallErrorInfo)
