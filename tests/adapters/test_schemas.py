"""The published JSON Schemas against the declarations and the hand-written decoder.

Agreement rule. The schema of a class must accept a JSON document exactly when the
class's adapter accepts it, judged on the document alone. Only two things are
beyond a schema and are taken out, no more:

- the acceptance window around the reception time (`future_timestamp`, `too_old`)
  and the topic (`bad_topic`, `unknown_class`, `unknown_channel`): the adapter is
  called directly, without the dispatcher, so these never arise;
- whether a `ts` string that matches the published RFC 3339 pattern names a real
  instant (2024-02-30, hour 24, a leap second): when the adapter rejects such a
  document with `bad_timestamp`, the schema must judge it as the adapter judges the
  same document with a valid `ts`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from adapters import ADAPTERS, CLASSES, DecodeError, DeviceClass, Topic
from adapters._base import COMMON_META, MetaField, Metric
from adapters._jsonv1 import TS_PATTERN
from adapters.schemas import default_dir, dumps, generate, json_schema, main, status_schema
from ingest import topics
from tests.adapters.golden import Case, load_cases

RECEIVED = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)
VALID_TS = "2024-06-15T08:05:00+08:00"
TELEMETRY = {a.device_class.name: a for a in ADAPTERS if a.channel == "telemetry"}
STATUS = {a.device_class.name: a for a in ADAPTERS if a.channel == "status"}
VALIDATORS = {c.name: Draft202012Validator(json_schema(c)) for c in CLASSES}
STATUS_VALIDATOR = Draft202012Validator(status_schema())


def adapter_accepts(cls: str, channel: str, doc: Any) -> bool:
    """The adapter's verdict on `doc` alone, under the agreement rule above."""
    adapter = (TELEMETRY if channel == "telemetry" else STATUS)[cls]
    topic = Topic("gz", cls, "dev-1", channel)
    try:
        adapter.decode(topic, orjson.dumps(doc), RECEIVED)
    except DecodeError as exc:
        ts = doc.get("ts") if isinstance(doc, dict) else None
        if exc.reason == "bad_timestamp" and isinstance(ts, str) and re.search(TS_PATTERN, ts):
            return adapter_accepts(cls, channel, {**doc, "ts": VALID_TS})
        return False
    return True


# ------------------------------------------------------------------ files and dialect


@pytest.mark.parametrize("rel", sorted(generate()))
def test_committed_schema_is_generated(rel: str) -> None:
    path = default_dir() / rel
    assert path.read_text(encoding="utf-8") == dumps(generate()[rel]), (
        f"{rel} is stale: run python -m adapters.schemas --write"
    )


def test_check_passes() -> None:
    assert main(["--check"]) == 0


@pytest.mark.parametrize("rel", sorted(generate()))
def test_schema_is_valid_draft_2020_12(rel: str) -> None:
    schema = generate()[rel]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{rel}")


def test_schema_carries_the_declaration() -> None:
    for cls in CLASSES:
        schema = json_schema(cls)
        assert schema["x-expected-interval-s"] == cls.expected_interval_s
        defs = schema["$defs"]
        for m in cls.metrics:
            d = defs[f"metric.{m.name}"]
            assert (d["minimum"], d["maximum"], d["x-unit"]) == (m.minimum, m.maximum, m.unit)
        for s in cls.states:
            assert defs[f"state.{s.name}"]["enum"] == list(s.values)
        meta = schema["properties"]["meta"]["properties"]
        assert set(meta) == {f.name for f in COMMON_META + cls.meta}


# ------------------------------------------------------------------ golden cases


def _json_object_cases() -> list[tuple[Case, str, str, dict[str, Any]]]:
    out = []
    for case in load_cases():
        try:
            topic = topics.parse(case.topic, "gz")
        except DecodeError:
            continue  # bad_topic: no class, so no schema
        if topic.device_class not in VALIDATORS or topic.channel not in ("telemetry", "status"):
            continue  # unknown_class, unknown_channel: likewise
        try:
            doc = orjson.loads(case.payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            out.append((case, topic.device_class, topic.channel, doc))
    return out


JSON_CASES = _json_object_cases()


def test_golden_cases_reach_the_schemas() -> None:
    reasons = {c.error["reason"] for c, *_ in JSON_CASES if c.error}
    assert {"schema", "unknown_metric", "out_of_range", "bad_timestamp", "too_old"} <= reasons
    assert sum(1 for c, *_ in JSON_CASES if c.expected) >= 4 * 3


@pytest.mark.parametrize(
    ("case", "cls", "channel", "doc"), JSON_CASES, ids=[c[0].id for c in JSON_CASES]
)
def test_golden_case_agrees_with_schema(
    case: Case, cls: str, channel: str, doc: dict[str, Any]
) -> None:
    must_accept = adapter_accepts(cls, channel, doc)
    # The rule only ever excuses the reasons it names.
    if case.expected is not None or case.error["reason"] in ("future_timestamp", "too_old"):
        assert must_accept
    elif case.error["reason"] != "bad_timestamp":
        assert not must_accept
    validator = VALIDATORS[cls] if channel == "telemetry" else STATUS_VALIDATOR
    errors = [e.message for e in validator.iter_errors(doc)]
    assert (not errors) == must_accept, errors


# ------------------------------------------------------------------ property test

_JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
ANY_JSON = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
POINTS = st.sampled_from(["0", "1", "2", "P1", "P2", "P3", "WE1", "D1", "左岸", "\n", "x" * 32]) | (
    st.text(min_size=1, max_size=32).filter(lambda p: "." not in p and "\x00" not in p)
)
BAD_POINTS = st.sampled_from(
    ["", "P1.a", ".", "x" * 33, "x" * 32 + "\n", "P\x00", "..", "1.", "x" * 31 + "."]
)
TRICKY_TS_VALUES = (
    "2024-06-15T08:05:00",
    "2024-06-15 08:05:00+08:00",
    "20240615T080500+0800",
    "2024-06-15T08:05+08:00",
    "2024-06-15T08:05:00+0800",
    "2024-06-15T08:05:00,5+08:00",
    "2024-06-15T08:05:00+08:00\n",
    "2024-06-15T08:05:00.+08:00",
    "2024-02-30T08:05:00+08:00",
    "2024-06-15T24:00:00Z",
    "2016-12-31T23:59:60Z",
    "2024-06-15T08:05:00+24:00",
    "0000-01-01T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "２０２４-06-15T08:05:00+08:00",
    "2024-06-15T08:05:00.123456789-00:00",
    "",
)
TRICKY_TS = st.sampled_from(TRICKY_TS_VALUES)
MAX_EPOCH = 32503680000000


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    y = draw(st.integers(1970, 2999))
    mo, d = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    h, mi, s = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    sep = draw(st.sampled_from("Tt"))
    frac = draw(st.sampled_from(["", ".5", ".250", ".123456", ".123456789"]))
    off = draw(st.sampled_from(["Z", "z", "+08:00", "-00:00", "+05:45", "-03:30", "+23:59"]))
    return f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{off}"


VALID_TS_ST = (
    rfc3339()
    | st.integers(0, MAX_EPOCH - 1)
    | st.integers(0, MAX_EPOCH - 1).map(float)
    | st.sampled_from([0, MAX_EPOCH - 1])
)
BAD_TS_ST = (
    TRICKY_TS
    | st.text(max_size=30)
    | st.sampled_from([-1, MAX_EPOCH, 1718409600000.5, True, None, [], {}, 1e300])
)


def _number_in(lo: float, hi: float) -> st.SearchStrategy[float | int]:
    ints = st.integers(math.ceil(lo), math.floor(hi))
    return ints | st.floats(lo, hi) | st.sampled_from([lo, hi])


def _out_values(lo: float, hi: float) -> list[float]:
    span = max(hi - lo, 1.0)
    return [math.nextafter(hi, math.inf), math.nextafter(lo, -math.inf), hi + 1, lo - 1, hi + span]


def _number_out(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.sampled_from(_out_values(lo, hi))


def _metric_value(m: Metric) -> st.SearchStrategy[Any]:
    return _number_in(m.minimum, m.maximum)


def _meta_value(f: MetaField) -> st.SearchStrategy[Any]:
    if f.choices:
        return st.sampled_from(f.choices)
    if f.kind is str:
        return st.text(max_size=200).filter(lambda t: "\x00" not in t) | st.sampled_from(
            ["520100", "520500", "guian", "x" * 200]
        )
    lo = f.minimum if f.minimum is not None else -1e6
    hi = f.maximum if f.maximum is not None else 1e6
    if f.kind is int:
        ints = st.integers(math.ceil(lo), math.floor(hi))
        return ints | ints.map(float)
    return _number_in(lo, hi)


def _bad_meta_value(f: MetaField) -> st.SearchStrategy[Any]:
    wrong = st.sampled_from([None, True, [], {}, "x" * 201, "a\x00b", 2.5, "1"])
    if f.minimum is not None and f.maximum is not None:
        return wrong | _number_out(f.minimum, f.maximum)
    if f.choices:
        return wrong | st.sampled_from(["other", 0, 99])
    return wrong


@st.composite
def valid_document(draw: st.DrawFn, cls: DeviceClass) -> dict[str, Any]:
    doc: dict[str, Any] = {"ts": draw(VALID_TS_ST)}
    if draw(st.booleans()):
        doc["seq"] = draw(st.integers(0, 2**63 - 1) | st.sampled_from([0, 7.0]))
    metrics = {}
    for m in draw(st.lists(st.sampled_from(cls.metrics), max_size=5)):
        key = f"{m.name}.{draw(POINTS)}" if m.pointed and draw(st.booleans()) else m.name
        metrics[key] = draw(_metric_value(m))
    if metrics or draw(st.booleans()):
        doc["metrics"] = metrics
    if cls.states and draw(st.booleans()):
        states = {}
        for s in draw(st.lists(st.sampled_from(cls.states), max_size=3)):
            key = f"{s.name}.{draw(POINTS)}" if s.pointed and draw(st.booleans()) else s.name
            states[key] = draw(st.sampled_from(s.values))
        doc["states"] = states
    fields = COMMON_META + cls.meta
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(fields), max_size=4, unique_by=lambda f: f.name))
        doc["meta"] = {f.name: draw(_meta_value(f)) for f in chosen}
    return doc


@st.composite
def perturbed(draw: st.DrawFn, cls: DeviceClass, doc: dict[str, Any]) -> Any:
    """One change that may or may not make the document invalid."""
    doc = orjson.loads(orjson.dumps(doc))  # a deep copy
    kind = draw(st.integers(0, 11))
    names = [m.name for m in cls.metrics]
    section = draw(st.sampled_from(["metrics", "states", "meta"]))
    inner = doc.get(section)
    if kind == 0:
        return draw(ANY_JSON)  # maybe not an object at all
    if kind == 1:
        doc[draw(st.sampled_from(["ts", "seq", "metrics", "states", "meta"]))] = draw(ANY_JSON)
    elif kind == 2:
        doc.pop(draw(st.sampled_from(["ts", "seq", "metrics", "states", "meta"])), None)
    elif kind == 3:
        doc[draw(st.text(max_size=8))] = draw(ANY_JSON)
    elif kind == 4:
        doc["ts"] = draw(BAD_TS_ST)
    elif kind == 5:
        doc["seq"] = draw(st.sampled_from([-1, 2**63, 1.5, True, None, "12", 2.0**63]))
    elif kind == 6:  # a metric just outside (or on the edge of) its range
        m = draw(st.sampled_from(cls.metrics))
        point = f".{draw(POINTS)}" if m.pointed and draw(st.booleans()) else ""
        value = draw(_number_out(m.minimum, m.maximum) | _number_in(m.minimum, m.maximum))
        metrics = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
        metrics[m.name + point] = value
        doc["metrics"] = metrics
    elif kind == 7:  # keys: unknown names, points where none is taken, bad points
        name = draw(st.sampled_from([*names, *(s.name for s in cls.states), "bogus", ""]))
        key = draw(
            st.sampled_from([name, f"{name}.", f".{name}"])
            | BAD_POINTS.map(lambda p: f"{name}.{p}")
            | POINTS.map(lambda p: f"{name}.{p}")
            | st.text(max_size=12)
        )
        value = draw(st.sampled_from([1.0, "Charging", "Available"]) | ANY_JSON)
        target = doc.get(section) if isinstance(doc.get(section), dict) else {}
        target[key] = value
        doc[section] = target
    elif kind == 8:  # a state value outside its enum or of the wrong type
        if cls.states:
            s = draw(st.sampled_from(cls.states))
            states = doc.get("states") if isinstance(doc.get("states"), dict) else {}
            states[s.name] = draw(st.sampled_from(["charging", "Idle", "", 3, None]) | ANY_JSON)
            doc["states"] = states
    elif kind == 9:  # a meta field with a bad value, or an unknown one
        f = draw(st.sampled_from(COMMON_META + cls.meta))
        meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
        if draw(st.booleans()):
            meta[f.name] = draw(_bad_meta_value(f))
        else:
            meta[draw(st.text(max_size=8))] = draw(ANY_JSON)
        doc["meta"] = meta
    elif kind == 10:  # an arbitrary value somewhere inside a section
        if isinstance(inner, dict) and inner:
            inner[draw(st.sampled_from(sorted(inner)))] = draw(ANY_JSON)
        else:
            doc[section] = draw(st.sampled_from([{}, None, [], "x"]))
    else:  # no readings at all
        doc["metrics"] = {}
        doc.pop("states", None)
    return doc


@st.composite
def document(draw: st.DrawFn) -> tuple[DeviceClass, Any]:
    cls = draw(st.sampled_from(CLASSES))
    doc: Any = draw(valid_document(cls))
    for _ in range(draw(st.integers(0, 2))):
        doc = draw(perturbed(cls, doc)) if isinstance(doc, dict) else doc
    return cls, doc


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document())
def test_adapter_and_schema_agree(example: tuple[DeviceClass, Any]) -> None:
    cls, doc = example
    doc = orjson.loads(orjson.dumps(doc))  # exactly what the adapter will see
    expected = adapter_accepts(cls.name, "telemetry", doc)
    errors = [e.message for e in VALIDATORS[cls.name].iter_errors(doc)]
    assert (not errors) == expected, (doc, errors)


@st.composite
def valid_example(draw: st.DrawFn) -> tuple[DeviceClass, dict[str, Any]]:
    cls = draw(st.sampled_from(CLASSES))
    return cls, draw(valid_document(cls))


@settings(max_examples=200, deadline=None)
@given(valid_example())
def test_declared_documents_are_accepted(example: tuple[DeviceClass, dict[str, Any]]) -> None:
    """Guards the generator: a document built from the declaration alone is accepted
    by both exactly when it carries a reading."""
    cls, doc = example
    has_reading = bool(doc.get("metrics")) or bool(doc.get("states"))
    assert adapter_accepts(cls.name, "telemetry", doc) == has_reading
    assert VALIDATORS[cls.name].is_valid(doc) == has_reading


def _edges(cls: DeviceClass) -> list[Any]:
    """Documents on either side of every limit the declaration and the contract set:
    found by chance only rarely, so listed."""
    first = cls.metrics[0]
    base: dict[str, Any] = {"ts": VALID_TS, "metrics": {first.name: first.minimum}}
    docs: list[Any] = [base, [base], {}, {"ts": VALID_TS}, {**base, "metrics": {}}]
    for m in cls.metrics:
        for v in (m.minimum, m.maximum, *_out_values(m.minimum, m.maximum)):
            docs.append({**base, "metrics": {m.name: v}})
        for point in ("x" * 32, "x" * 33, "x" * 31 + "\n", "x" * 32 + "\n", "", "a.b", "\n"):
            docs.append({**base, "metrics": {f"{m.name}.{point}": m.minimum}})
    for st_ in cls.states:
        docs += [{"ts": VALID_TS, "states": {st_.name: v}} for v in (*st_.values, "", 1)]
        docs.append({"ts": VALID_TS, "states": {f"{st_.name}.1": st_.values[0]}})
    for f in COMMON_META + cls.meta:
        values: list[Any] = ["x" * 200, "x" * 201, "a\x00", "a\n", 1, 1.0, True, None]
        values += list(f.choices)
        if f.minimum is not None and f.maximum is not None:
            values += [f.minimum, f.maximum, f.minimum - 1, f.maximum + 1]
        docs += [{**base, "meta": {f.name: v}} for v in values]
    for seq in (0, 2**63 - 1, 2**63, -1, 7.0, 7.5, True, None):
        docs.append({**base, "seq": seq})
    for ts in (0, MAX_EPOCH - 1, MAX_EPOCH, -1, 1718409600000.0, *TRICKY_TS_VALUES):
        docs.append({**base, "ts": ts})
    for key in ("metrics", "states", "meta"):
        docs += [{**base, key: v} for v in (None, [], "x")]
    return docs


@pytest.mark.parametrize("cls", CLASSES, ids=[c.name for c in CLASSES])
def test_edges_agree(cls: DeviceClass) -> None:
    mismatches = []
    for doc in _edges(cls):
        expected = adapter_accepts(cls.name, "telemetry", doc)
        errors = [e.message for e in VALIDATORS[cls.name].iter_errors(doc)]
        if (not errors) != expected:
            mismatches.append((doc, expected, errors))
    assert not mismatches


# ------------------------------------------------------------------ the registry


def test_adapters_unique_and_complete() -> None:
    keys = [(a.device_class.name, a.channel) for a in ADAPTERS]
    assert len(keys) == len(set(keys)), "two adapters for one (class, channel)"
    names = [c.name for c in CLASSES]
    assert len(names) == len(set(names))
    for cls in CLASSES:
        assert (cls.name, "telemetry") in keys
        assert (cls.name, "status") in keys
    assert {a.device_class.name for a in ADAPTERS} <= set(names)
