"""Device registry: which device touches a batch must write, and the batched upsert.

A device is written on its first message seen by this worker, when its hints or
status change, and otherwise at most once per `resolution` for its last-seen time:
the registry is updated in batches, never per message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from ingest.batch import DeviceTouch

UPSERT = """
INSERT INTO devices AS d (device_id, class, first_seen, last_seen, last_ts, region, site, name,
                          meta, status, status_at, automated_at)
SELECT u.device_id, u.class, u.first_seen, u.last_seen, u.last_ts,
       u.meta::jsonb ->> 'region', u.meta::jsonb ->> 'site', u.meta::jsonb ->> 'name',
       COALESCE(u.meta::jsonb, '{}'), u.status, u.status_at, u.automated_at
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[],
            $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[])
     AS u(device_id, class, first_seen, last_seen, last_ts, meta, status, status_at, automated_at)
ORDER BY u.device_id
ON CONFLICT (device_id) DO UPDATE SET
    first_seen = LEAST(d.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
    last_ts = GREATEST(d.last_ts, EXCLUDED.last_ts),
    meta = d.meta || EXCLUDED.meta,
    region = CASE WHEN d.provisioned THEN d.region ELSE COALESCE(EXCLUDED.region, d.region) END,
    site = CASE WHEN d.provisioned THEN d.site ELSE COALESCE(EXCLUDED.site, d.site) END,
    name = CASE WHEN d.provisioned THEN d.name ELSE COALESCE(EXCLUDED.name, d.name) END,
    status = CASE WHEN EXCLUDED.status_at IS NOT NULL
                   AND (d.status_at IS NULL OR EXCLUDED.status_at >= d.status_at)
                  THEN EXCLUDED.status ELSE d.status END,
    status_at = GREATEST(d.status_at, EXCLUDED.status_at),
    automated_at = LEAST(d.automated_at, EXCLUDED.automated_at)
"""


@dataclass(slots=True)
class _Known:
    last_seen: datetime
    meta: dict[str, Any] | None


class RegistryCache:
    """What this worker has already written for each device."""

    def __init__(self, resolution: timedelta) -> None:
        self.resolution = resolution
        self._known: dict[str, _Known] = {}
        # device -> the earliest automated report time this worker has committed
        self.automated: dict[str, datetime] = {}
        # device -> the class it is registered under (written or checked by this worker)
        self.classes: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._known)

    def due(self, touches: Mapping[str, DeviceTouch]) -> list[tuple[str, DeviceTouch]]:
        """The touches that must be written, sorted by device id (lock order)."""
        out = []
        for dev, t in touches.items():
            k = self._known.get(dev)
            if (
                k is None
                or t.status is not None
                or (t.meta is not None and t.meta != k.meta)
                or (t.automated_at is not None and self._earlier(dev, t.automated_at))
                or t.last_seen - k.last_seen >= self.resolution
            ):
                out.append((dev, t))
        out.sort(key=lambda item: item[0])
        return out

    def _earlier(self, dev: str, automated_at: datetime) -> bool:
        """Whether `automated_at` is news: no automation of `dev` committed, or only a later one."""
        known = self.automated.get(dev)
        return known is None or automated_at < known

    def committed(self, written: list[tuple[str, DeviceTouch]]) -> None:
        for dev, t in written:
            k = self._known.get(dev)
            meta = t.meta if t.meta is not None else (k.meta if k else None)
            self._known[dev] = _Known(t.last_seen, meta)
            self.classes[dev] = t.device_class
            if t.automated_at is not None and self._earlier(dev, t.automated_at):
                self.automated[dev] = t.automated_at

    def forget(self) -> None:
        self._known.clear()
        self.automated.clear()
        self.classes.clear()


def upsert_args(written: list[tuple[str, DeviceTouch]]) -> tuple[list[Any], ...]:
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [])
    for dev, t in written:
        cols[0].append(dev)
        cols[1].append(t.device_class)
        cols[2].append(t.first_seen)
        cols[3].append(t.last_seen)
        cols[4].append(t.last_ts)
        cols[5].append(orjson.dumps(t.meta).decode() if t.meta else None)
        cols[6].append(t.status)
        cols[7].append(t.status_at)
        cols[8].append(t.automated_at)
    return cols
