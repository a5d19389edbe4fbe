"""JSON Schemas (draft 2020-12) of the v1 payloads, generated from the class declarations.

The decoder in `_jsonv1` validates by hand on the hot path; these schemas publish the
same contract for device makers and are checked against it (tests/adapters/
test_schemas.py). `python -m adapters.schemas --write` regenerates `schemas/`;
`--check` exits non-zero when a committed file differs from what the declarations give.

What a schema cannot say, and the decoder therefore checks on its own: that a
pattern-valid `ts` is a real instant (2024-02-30, 24:00, a leap second) and the
acceptance window around the reception time (`future_timestamp`, `too_old`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters import CLASSES
from adapters._base import COMMON_META, DeviceClass, MetaField, Metric, State
from adapters._jsonv1 import _MAX_EPOCH_MS, _MAX_POINT_LEN, _MAX_TEXT_LEN, TS_PATTERN
from adapters.status import STATUSES

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://gz-infra-ingest.invalid/schemas"
VERSION = 1
STATUS = "status"  # the status channel's schema folder: one schema for every class

_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Text without NUL (PostgreSQL refuses it in text columns).
_TEXT_PATTERN = "^[^\\u0000]*$"
# Points: 1..32 characters, no "." and no NUL. The length is a lookahead over
# `[\s\S]` and the class takes "\n", so the pattern means the same in ECMA-262 and in
# Python's `re`, whose `$` also matches before a final newline.
_POINT = f"\\.(?![\\s\\S]{{{_MAX_POINT_LEN + 1}}})[^.\\u0000]+$"

JSON = dict[str, Any]


def _ts() -> JSON:
    return {
        "description": "observation time: RFC 3339 with an offset, or epoch milliseconds",
        "anyOf": [
            {"type": "string", "format": "date-time", "pattern": TS_PATTERN},
            {"type": "integer", "minimum": 0, "exclusiveMaximum": _MAX_EPOCH_MS},
        ],
    }


def _metric(m: Metric) -> JSON:
    out: JSON = {
        "type": "number",
        "minimum": m.minimum,
        "maximum": m.maximum,
        "description": f"{m.description} ({m.unit})",
        "x-unit": m.unit,
    }
    if m.register:
        out["x-register"] = True
    return out


def _state(s: State) -> JSON:
    return {"type": "string", "enum": list(s.values), "description": s.description}


def _meta(f: MetaField) -> JSON:
    out: JSON = {"description": f.description}
    if f.kind is str:
        out.update(type="string", maxLength=_MAX_TEXT_LEN, pattern=_TEXT_PATTERN)
    else:
        out["type"] = "integer" if f.kind is int else "number"
    if f.choices:
        out["enum"] = list(f.choices)
    if f.minimum is not None:
        out["minimum"] = f.minimum
    if f.maximum is not None:
        out["maximum"] = f.maximum
    return out


def _readings(
    items: Sequence[Metric | State], prefix: str, description: str
) -> tuple[JSON, JSON]:
    """The `metrics` or `states` object and the `$defs` its keys refer to."""
    defs: JSON = {}
    props: JSON = {}
    patterns: JSON = {}
    for item in items:
        if not _NAME.fullmatch(item.name):
            raise ValueError(f"{item.name!r} is not a snake_case name")
        ref = f"{prefix}.{item.name}"
        defs[ref] = _metric(item) if isinstance(item, Metric) else _state(item)
        props[item.name] = {"$ref": f"#/$defs/{ref}"}
        if item.pointed:
            patterns[f"^{item.name}{_POINT}"] = {"$ref": f"#/$defs/{ref}"}
    obj: JSON = {
        "type": "object",
        "description": description,
        "properties": props,
        "additionalProperties": False,
    }
    if patterns:
        obj["patternProperties"] = patterns
    return obj, defs


def json_schema(cls: DeviceClass) -> JSON:
    """The v1 telemetry payload of a class, from its declaration."""
    metrics, metric_defs = _readings(
        cls.metrics, "metric", "readings by `name` or `name.point` (one of several sensors)"
    )
    states, state_defs = _readings(cls.states, "state", "enumerated states by `name[.point]`")
    meta = {
        "type": "object",
        "description": "registry hints; the registry keeps the last value sent",
        "properties": {f.name: _meta(f) for f in COMMON_META + cls.meta},
        "additionalProperties": False,
    }
    return {
        "$schema": DIALECT,
        "$id": f"{BASE_URI}/{cls.name}/v{VERSION}.json",
        "title": f"{cls.title} ({cls.name}): v{VERSION} telemetry",
        "description": (
            f"Payload published on <prefix>/v{VERSION}/{cls.name}/<device_id>/telemetry."
        ),
        "x-device-class": cls.name,
        "x-expected-interval-s": cls.expected_interval_s,
        "type": "object",
        "properties": {
            "ts": _ts(),
            "seq": {
                "type": "integer",
                "minimum": 0,
                "maximum": 2**63 - 1,
                "description": "message counter, for gap and duplicate detection",
            },
            "metrics": metrics,
            "states": states,
            "meta": meta,
        },
        "required": ["ts"],
        "additionalProperties": False,
        # A message carries at least one reading: a non-empty metrics or states.
        "anyOf": [
            {"required": ["metrics"], "properties": {"metrics": {"minProperties": 1}}},
            {"required": ["states"], "properties": {"states": {"minProperties": 1}}},
        ],
        "$defs": metric_defs | state_defs,
    }


def status_schema() -> JSON:
    """The JSON form of the status channel (any class)."""
    return {
        "$schema": DIALECT,
        "$id": f"{BASE_URI}/{STATUS}/v{VERSION}.json",
        "title": f"Device status (birth and last will): v{VERSION}",
        "description": (
            f"JSON form of a payload on <prefix>/v{VERSION}/<class>/<device_id>/status; "
            "the plain-text payloads `online` and `offline` are accepted too. "
            "Without ts the reception time is used."
        ),
        "type": "object",
        "properties": {"status": {"enum": list(STATUSES)}, "ts": _ts()},
        "required": ["status"],
        "additionalProperties": False,
    }


def generate() -> dict[str, JSON]:
    """Every published schema by its path under `schemas/`."""
    out = {f"{c.name}/v{VERSION}.json": json_schema(c) for c in CLASSES}
    out[f"{STATUS}/v{VERSION}.json"] = status_schema()
    return out


def dumps(schema: JSON) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def default_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "schemas"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.schemas", description=(__doc__ or "").split("\n\n")[0]
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the schema files")
    mode.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument("--dir", type=Path, default=default_dir(), help="default: %(default)s")
    args = parser.parse_args(argv)
    stale = []
    for rel, schema in generate().items():
        path: Path = args.dir / rel
        text = dumps(schema)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            stale.append(rel)
    if stale:
        print(f"stale or missing in {args.dir}: {', '.join(stale)}", file=sys.stderr)
        print("run: python -m adapters.schemas --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
