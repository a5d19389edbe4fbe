"""The `status` channel: retained birth and last-will messages of any class.

Payload `online` / `offline`, as plain text or `{"status": "...", "ts": ...}`.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from adapters._base import Adapter, Decoded, DecodeError, DeviceClass, Topic
from adapters._jsonv1 import parse_ts

STATUSES = ("online", "offline")


def status_adapter(cls: DeviceClass) -> Adapter:
    def decode(topic: Topic, payload: bytes, received_at: datetime) -> Decoded:
        text = payload.strip()
        ts = received_at
        if text.startswith(b"{"):
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise DecodeError("bad_json", str(exc)) from None
            if type(doc) is not dict or not doc.keys() <= {"status", "ts"}:
                raise DecodeError("schema", 'status JSON must be {"status": ..., "ts": ...}')
            status = doc.get("status")
            if "ts" in doc:
                ts = parse_ts(doc["ts"])
        else:
            status = text.decode("ascii", "replace")
        if status not in STATUSES:
            raise DecodeError("out_of_range", f"status {status!r} is not online or offline")
        return Decoded(cls.name, topic.device_id, ts, [], status=str(status))

    return Adapter(cls, "status", (1,), decode, f"{cls.title}: birth/last-will status")
