"""Decoding of the v1 JSON contract shared by every class.

`{"ts": RFC 3339 with offset | epoch ms, "seq": int?, "metrics": {name[.point]: number},
"states": {name[.point]: string}?, "meta": {name: scalar}?}`

Validation is hand-written against the class declaration rather than run through a
generic JSON Schema validator: it is the hot path (see the note in README), and the
published schemas in `schemas/` are generated from the same declarations, with a
test that the two agree on every golden case.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import orjson

from adapters._base import Adapter, Decoded, DecodeError, DeviceClass, Row, StateEvent, Topic

_TOP_KEYS = frozenset(("ts", "seq", "metrics", "states", "meta"))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_POINT_LEN = 32
_MAX_TEXT_LEN = 200
_NUMBER = frozenset((int, float))
_MAX_EPOCH_MS = 32503680000000  # year 3000
# RFC 3339 `date-time` (section 5.6 ABNF, which requires the offset). Published in the
# schemas too; datetime.fromisoformat alone would also take ISO 8601 forms such as
# "20240615T080500+0800" or "2024-06-15T08:05+08:00" and refuses a lowercase "t"/"z".
TS_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_TS_RE = re.compile(TS_PATTERN)


def as_int(value: object) -> int | None:
    """A JSON integer, or None. Like JSON Schema's "integer", 5.0 counts as 5 (a
    Python device's json.dumps writes whole floats that way); booleans never count."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def parse_ts(value: object) -> datetime:
    """RFC 3339 text with an explicit offset, or integer epoch milliseconds."""
    ms = as_int(value)
    if ms is not None:
        if not 0 <= ms < _MAX_EPOCH_MS:
            raise DecodeError("bad_timestamp", f"epoch milliseconds {value} out of range")
        return _EPOCH + timedelta(milliseconds=ms)
    if type(value) is str:
        if _TS_RE.fullmatch(value) is None:
            raise DecodeError("bad_timestamp", f"ts {value!r} is not RFC 3339")
        try:
            ts = datetime.fromisoformat(value.upper())
        except ValueError:
            raise DecodeError("bad_timestamp", f"ts {value!r} is not RFC 3339") from None
        if ts.tzinfo is None:
            raise DecodeError("bad_timestamp", f"ts {value!r} has no UTC offset")
        return ts
    if value is None:
        raise DecodeError("bad_timestamp", "ts is missing")
    raise DecodeError("bad_timestamp", f"ts must be RFC 3339 text or epoch ms, not {value!r}")


def _split(key: str) -> tuple[str, str]:
    name, _, point = key.partition(".")
    if not point or len(point) > _MAX_POINT_LEN or "\x00" in point or "." in point:
        raise DecodeError("schema", f"bad point in {key!r}")
    return name, point


def _hint(name: str, known: Iterable[str]) -> str:
    """` (did you mean a, b?)` with the nearest declared names, or nothing: an
    integrator reading the dead letter sees the likely typo at once."""
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def _metrics(cls: DeviceClass, metrics: object) -> list[Row]:
    if type(metrics) is not dict:
        raise DecodeError("schema", "metrics must be an object")
    bounds = cls.metric_bounds
    width = len(bounds)
    main: list[float | None] | None = None
    pointed: dict[str, list[float | None]] | None = None
    for key, value in metrics.items():
        spec = bounds.get(key)
        if spec is None:
            name, point = _split(key) if "." in key else (key, "")
            spec = bounds.get(name)
            if spec is None:
                hint = _hint(name, cls.columns)
                raise DecodeError("unknown_metric", f"{cls.name} has no metric {name!r}{hint}")
            if not point or not cls.metrics[spec[0]].pointed:
                raise DecodeError("schema", f"metric {name!r} takes no point")
            if pointed is None:
                pointed = {}
            row = pointed.get(point)
            if row is None:
                row = pointed[point] = [None] * width
        else:
            if main is None:
                main = [None] * width
            row = main
        i, lo, hi = spec
        if type(value) not in _NUMBER:
            raise DecodeError("schema", f"{key} must be a number, not {value!r}")
        if not lo <= value <= hi:
            m = cls.metrics[i]
            raise DecodeError("out_of_range", f"{key}={value} outside {lo}..{hi} {m.unit}")
        row[i] = value
    rows: list[Row] = []
    if main is not None:
        rows.append(("", main))
    if pointed:
        rows.extend(pointed.items())
    return rows


def _states(cls: DeviceClass, states: object) -> list[StateEvent]:
    if type(states) is not dict:
        raise DecodeError("schema", "states must be an object")
    out: list[StateEvent] = []
    for key, value in states.items():
        name, point = _split(key) if "." in key else (key, "")
        spec = cls.state_index.get(name)
        if spec is None:
            hint = _hint(name, cls.state_index)
            raise DecodeError("unknown_metric", f"{cls.name} has no state {name!r}{hint}")
        if point and not spec.pointed:
            raise DecodeError("schema", f"state {name!r} takes no point")
        if type(value) is not str:
            raise DecodeError("schema", f"state {key} must be a string, not {value!r}")
        if value not in spec.values:
            raise DecodeError("out_of_range", f"state {key}={value!r} not one of {spec.values}")
        out.append((point, name, value))
    return out


def check_meta(cls: DeviceClass, meta: object) -> dict[str, str | float | int]:
    if type(meta) is not dict:
        raise DecodeError("schema", "meta must be an object")
    for key, value in meta.items():
        spec = cls.meta_index.get(key)
        if spec is None:
            raise DecodeError("schema", f"{cls.name} has no meta field {key!r}")
        if spec.kind is str:
            if type(value) is not str or len(value) > _MAX_TEXT_LEN or "\x00" in value:
                raise DecodeError("schema", f"meta.{key} must be text of at most 200 characters")
        elif spec.kind is int:
            whole = as_int(value)
            if whole is None:
                raise DecodeError("schema", f"meta.{key} must be an integer")
            if whole is not value:
                meta[key] = value = whole
        elif type(value) is not float and type(value) is not int:
            raise DecodeError("schema", f"meta.{key} must be a number")
        if spec.choices and value not in spec.choices:
            raise DecodeError("out_of_range", f"meta.{key}={value!r} not one of {spec.choices}")
        lo, hi = spec.minimum, spec.maximum
        if lo is not None and hi is not None and not lo <= value <= hi:
            raise DecodeError("out_of_range", f"meta.{key}={value} outside {spec.minimum}..{spec.maximum}")
    return meta


def decode_document(cls: DeviceClass, topic: Topic, doc: object) -> Decoded:
    """Validate an already parsed v1 document against the class declaration."""
    if type(doc) is not dict:
        raise DecodeError("schema", "payload must be a JSON object")
    if not doc.keys() <= _TOP_KEYS:
        extra = sorted(doc.keys() - _TOP_KEYS)
        raise DecodeError("schema", f"unexpected top-level keys {extra}")
    ts = parse_ts(doc.get("ts"))
    # An optional key is absent, not null: `"seq": null` is a schema error.
    seq = None
    if "seq" in doc:
        seq = as_int(doc["seq"])
        if seq is None or not 0 <= seq < 2**63:
            raise DecodeError("schema", "seq must be a non-negative integer")
    rows = _metrics(cls, doc["metrics"]) if "metrics" in doc else []
    states = _states(cls, doc["states"]) if "states" in doc else []
    if not rows and not states:
        raise DecodeError("schema", "a message needs at least one metric or state")
    meta = check_meta(cls, doc["meta"]) if "meta" in doc else None
    return Decoded(cls.name, topic.device_id, ts, rows, states, meta, seq)


def json_adapter(cls: DeviceClass) -> Adapter:
    """The `telemetry` channel adapter of a class: v1 JSON."""

    def decode(topic: Topic, payload: bytes, received_at: datetime) -> Decoded:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("bad_json", str(exc)) from None
        return decode_document(cls, topic, doc)

    return Adapter(cls, "telemetry", (1,), decode, f"{cls.title}: v1 JSON telemetry")
