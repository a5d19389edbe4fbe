"""OCPP 1.6J calls of a charge point, sans-I/O: a text frame in, what to do with it out.

`parse` checks the OCPP-J envelope and validates the payload against the official
OCPP 1.6 JSON schemas that the `ocpp` package ships, and names the CallError the
standard gives for each failure (with OCPP 1.6's own spellings, `FormationViolation`
and `OccurenceConstraintViolation`). `answer` builds the CallResult payload of a
valid call from what the central system decided (transaction id, idTag status).
`call_result` / `call_error` encode the frames.

Which calls carry readings is the adapter's business (`adapters/ocpp.py`): every
valid call goes to the pipeline with the `ocpp` channel's topic, and its answer is
sent only after the commit, so a charge point never hears "accepted" for a reading
that is not stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from jsonschema.exceptions import ValidationError as SchemaError
from ocpp.messages import get_validator

__all__ = [
    "ACTIONS",
    "Call",
    "CallErrorInfo",
    "answer",
    "call_error",
    "call_result",
    "parse",
]

# Charge point -> central system actions of OCPP 1.6 (core, firmware, local list, …).
ACTIONS: Final = (
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
)
# Central system -> charge point actions: known to OCPP 1.6, not served in this direction.
_OTHER_DIRECTION: Final = frozenset(
    (
        "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache",
        "ClearChargingProfile", "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics",
        "GetLocalListVersion", "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow",
        "Reset", "SendLocalList", "SetChargingProfile", "TriggerMessage", "UnlockConnector",
        "UpdateFirmware",
    )
)  # fmt: skip
_MAX_ID: Final = 36
_LEADING_ID: Final = re.compile(r'^\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')
# jsonschema validator keyword -> OCPP 1.6 CallError code
_SCHEMA_CODES: Final = {
    "type": "TypeConstraintViolation",
    "required": "OccurenceConstraintViolation",
    "additionalProperties": "FormationViolation",
}
_RANK: Final = {"additionalProperties": 0, "required": 1, "type": 2}


@dataclass(frozen=True, slots=True)
class CallErrorInfo:
    """A frame the central system refuses: the CallError to send (when the frame
    named a unique id) and the dead letter's reason."""

    unique_id: str | None  # None: no id could be read, so no CallError can be addressed
    code: str  # OCPP 1.6 CallError code
    description: str
    reason: str  # dead-letter reason (adapters.REASONS)


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


def _refuse(text: str | bytes, code: str, description: str, reason: str = "schema") -> CallErrorInfo:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    m = _LEADING_ID.match(text)
    return CallErrorInfo(m[1] if m else None, code, description, reason)


def parse(text: str | bytes) -> Call | CallErrorInfo | None:
    """A charge point's frame as a valid call, a refusal, or None for a CALLRESULT or
    CALLERROR (this central system sends no calls, so there is nothing to match)."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return _refuse(text, "FormationViolation", f"not JSON: {exc}", "bad_json")
    if type(frame) is not list or not frame:
        return _refuse(text, "FormationViolation", "an OCPP-J message is a non-empty JSON array")
    kind = frame[0]
    if kind in (3, 4) and type(kind) is int:
        return None
    if kind != 2 or type(kind) is not int:
        return _refuse(text, "FormationViolation", f"message type id {kind!r:.20} is not 2, 3 or 4")
    if len(frame) != 4:
        return _refuse(text, "ProtocolError", f"a CALL has 4 elements, not {len(frame)}")
    _, unique_id, action, payload = frame
    if type(unique_id) is not str or not 0 < len(unique_id) <= _MAX_ID:
        detail = "uniqueId must be text of 1 to 36 characters"
        return CallErrorInfo(None, "FormationViolation", detail, "schema")
    if type(action) is not str:
        return CallErrorInfo(unique_id, "FormationViolation", "action must be text", "schema")
    if action not in ACTIONS:
        if action in _OTHER_DIRECTION:
            return CallErrorInfo(
                unique_id, "NotSupported", f"{action} is sent by a central system, not to one", "unsupported"
            )
        return CallErrorInfo(unique_id, "NotImplemented", f"unknown action {action!r:.40}", "unsupported")
    if type(payload) is not dict:
        return CallErrorInfo(unique_id, "FormationViolation", f"{action} payload must be an object", "schema")
    errors: list[SchemaError] = list(get_validator(2, action, "1.6").iter_errors(payload))
    if errors:
        # A payload can break several rules: name the one the standard ranks as most
        # basic (a missing field before a wrong type before a bad value).
        first = min(errors, key=lambda e: _RANK.get(str(e.validator), len(_RANK)))
        code = _SCHEMA_CODES.get(str(first.validator), "PropertyConstraintViolation")
        where = "/".join(str(p) for p in first.absolute_path) or "payload"
        return CallErrorInfo(unique_id, code, f"{action} {where}: {first.message:.200}", "schema")
    return Call(unique_id, action, payload)


def _now(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def answer(
    call: Call,
    *,
    heartbeat_interval_s: int,
    id_tag_info: dict[str, Any] | None = None,
    transaction_id: int | None = None,
    vendors: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The CallResult payload, without `currentTime` (stamped when it is sent)."""
    action = call.action
    if action == "BootNotification":
        return {"status": "Accepted", "interval": heartbeat_interval_s}
    if action == "Authorize":
        return {"idTagInfo": id_tag_info or {"status": "Accepted"}}
    if action == "StartTransaction":
        assert transaction_id is not None
        return {"transactionId": transaction_id, "idTagInfo": id_tag_info or {"status": "Accepted"}}
    if action == "StopTransaction":
        return {"idTagInfo": id_tag_info} if id_tag_info is not None else {}
    if action == "DataTransfer":
        return {"status": "Accepted" if call.payload.get("vendorId") in vendors else "UnknownVendorId"}
    return {}  # Heartbeat gets its currentTime when sent; the notifications answer {}


_STAMPED: Final = frozenset(("BootNotification", "Heartbeat"))


def call_result(unique_id: str, action: str, payload: dict[str, Any], now: datetime) -> bytes:
    if action in _STAMPED:
        payload = {**payload, "currentTime": _now(now)}
    return orjson.dumps([3, unique_id, payload])


def call_error(err: CallErrorInfo) -> bytes:
    assert err.unique_id is not None
    return orjson.dumps([4, err.unique_id, err.code, err.description[:255], {}])
