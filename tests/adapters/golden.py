"""Golden-file cases: `testdata/<class or format>/<case>/` holds

- `topic`: the MQTT topic (one line);
- `payload`: the bytes exactly as published (`payload.hex` instead, for binary frames:
  hex digits, white space ignored);
- `received_at` (optional): RFC 3339 reception time, default 2024-06-15T00:10:00+00:00;
- exactly one of `expected.json` (the decoded message, see `as_json`) or `error.json`
  (`{"reason": ..., "detail_contains": ...}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from adapters import ADAPTERS, CLASSES, Decoded
from ingest.dispatch import Dispatcher

TESTDATA = Path(__file__).parent / "testdata"
DEFAULT_RECEIVED = "2024-06-15T00:10:00+00:00"


@dataclass(frozen=True)
class Case:
    path: Path
    topic: str
    payload: bytes
    received_at: datetime
    expected: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def load_cases() -> list[Case]:
    cases = []
    for d in sorted(p for p in TESTDATA.glob("*/*") if p.is_dir()):
        if (d / "payload.hex").exists():
            payload = bytes.fromhex("".join((d / "payload.hex").read_text().split()))
        else:
            payload = (d / "payload").read_bytes()
        rec = d / "received_at"
        received = datetime.fromisoformat(rec.read_text().strip() if rec.exists() else DEFAULT_RECEIVED)
        exp, err = d / "expected.json", d / "error.json"
        cases.append(
            Case(
                d,
                (d / "topic").read_text().strip(),
                payload,
                received,
                orjson.loads(exp.read_bytes()) if exp.exists() else None,
                orjson.loads(err.read_bytes()) if err.exists() else None,
            )
        )
    return cases


def dispatcher() -> Dispatcher:
    return Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))


def as_json(d: Decoded) -> dict[str, Any]:
    """A decoded message as comparable JSON: rows as {point: {metric: value}} with
    absent metrics left out, timestamps in UTC."""
    cls = next(c for c in CLASSES if c.name == d.device_class)
    rows = {
        point: {m.name: v for m, v in zip(cls.metrics, values, strict=True) if v is not None}
        for point, values in d.rows
    }
    return {
        "device_class": d.device_class,
        "device_id": d.device_id,
        "ts": d.ts.astimezone(datetime.fromisoformat(DEFAULT_RECEIVED).tzinfo).isoformat(),
        "seq": d.seq,
        "rows": rows,
        "states": [list(s) for s in d.states],
        "meta": d.meta,
        "status": d.status,
        "automatic": d.automatic,
    }
