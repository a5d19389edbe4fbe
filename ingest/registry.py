"""The device registry, and the one place of its SQL: the touches a batch must
write and their batched upsert, provisioning and decommissioning, and the device
queries of the API (with "online" from the configured windows).

A device is written on its first message seen by this worker, when its hints or
status change, and otherwise at most once per `resolution` for its last-seen time:
the registry is updated in batches, never per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from adapters import CLASSES
from ingest import audit
from ingest.batch import DeviceTouch
from ingest.config import RollupConfig
from ingest.indicators.provisioning import Record
from ingest.indicators.regions import PROVINCE, UNKNOWN, region_keys

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


PROVISION = """
INSERT INTO devices AS d (device_id, class, region, site, name, provisioned, attributes, provisioned_at)
SELECT u.device_id, u.class, u.region, u.site, u.name, true, u.attributes::jsonb, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
     AS u(device_id, class, region, site, name, attributes)
ORDER BY u.device_id
ON CONFLICT (device_id) DO UPDATE SET
    region = COALESCE(EXCLUDED.region, d.region),
    site = COALESCE(EXCLUDED.site, d.site),
    name = COALESCE(EXCLUDED.name, d.name),
    provisioned = true,
    attributes = d.attributes || EXCLUDED.attributes,
    provisioned_at = COALESCE(d.provisioned_at, now()),
    decommissioned_at = NULL
WHERE d.class = EXCLUDED.class
RETURNING device_id
"""


_AUDITED = "device_id, class, region, site, name, attributes::text AS attributes, decommissioned_at"


def _audited(row: Any) -> dict[str, Any]:
    return {
        "class": row["class"],
        "region": row["region"],
        "site": row["site"],
        "name": row["name"],
        "attributes": orjson.loads(row["attributes"]),
        "decommissioned": row["decommissioned_at"] is not None,
    }


async def provision(conn: Any, records: Iterable[Record], actor: str) -> list[str]:
    """Provision or update, recording each device's before and after in the audit
    trail under `actor`; returns the ids whose stored class differs (refused, not
    recorded). The caller holds the transaction: all or none."""
    recs = list(records)
    if not recs:
        return []
    ids = [r.device_id for r in recs]
    sql = f"SELECT {_AUDITED} FROM devices WHERE device_id = ANY($1::text[])"
    before = {row["device_id"]: _audited(row) for row in await conn.fetch(sql, ids)}
    cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for r in recs:
        attrs = orjson.dumps(dict(r.attributes)).decode()
        values = (r.device_id, r.device_class, r.region, r.site, r.name, attrs)
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    done = {row["device_id"] for row in await conn.fetch(PROVISION, *cols)}
    after = {row["device_id"]: _audited(row) for row in await conn.fetch(sql, sorted(done))}
    await audit.record_many(
        conn, actor, "provision", [(d, {"before": before.get(d), "after": after[d]}) for d in sorted(done)]
    )
    return sorted(set(ids) - done)


async def decommission(conn: Any, device_id: str, actor: str) -> bool:
    """Decommission (recorded in the audit trail); False when it already was."""
    status = await conn.execute(
        "UPDATE devices SET decommissioned_at = now() WHERE device_id = $1 AND decommissioned_at IS NULL",
        device_id,
    )
    done = bool(status != "UPDATE 0")
    if done:
        await audit.record(conn, actor, "decommission", device_id, {})
    return done


def _online_sql(cfg: RollupConfig, now_param: str) -> str:
    """SQL for 'online' with the per-class windows inlined (they are integers)."""
    cases = " ".join(f"WHEN '{c}' THEN {cfg.online_s(c)}" for c in (k.name for k in CLASSES))
    return (
        f"(d.last_seen IS NOT NULL AND d.last_seen <= {now_param} AND d.last_seen >= {now_param} - "
        f"make_interval(secs => CASE d.class {cases} ELSE 0 END) "
        "AND d.status IS DISTINCT FROM 'offline')"
    )


_COLUMNS = (
    "d.device_id, d.class, d.region, d.site, d.name, d.provisioned, d.attributes::text AS attributes, "
    "d.meta::text AS meta, d.first_seen, d.last_seen, d.status, d.decommissioned_at"
)


async def list_devices(
    conn: Any,
    cfg: RollupConfig,
    now: datetime,
    limit: int,
    device_class: str | None = None,
    region: str | None = None,
    online: bool | None = None,
    after: str | None = None,
) -> list[Any]:
    """Devices not decommissioned, by id, after `after`; `region` a validated key
    (the province takes every device, `unknown` those without a known region)."""
    where = ["d.decommissioned_at IS NULL"]
    args: list[Any] = [now]
    if device_class is not None:
        args.append(device_class)
        where.append(f"d.class = ${len(args)}")
    if region == UNKNOWN:
        args.append(sorted(region_keys() - {PROVINCE}))
        where.append(f"(d.region IS NULL OR NOT d.region = ANY(${len(args)}::text[]))")
    elif region is not None and region != PROVINCE:
        args.append(region)
        where.append(f"d.region = ${len(args)}")
    online_sql = _online_sql(cfg, "$1")
    if online is not None:
        where.append(online_sql if online else f"NOT {online_sql}")
    if after is not None:
        args.append(after)
        where.append(f"d.device_id > ${len(args)}")
    sql = (
        f"SELECT {_COLUMNS}, {online_sql} AS online FROM devices d WHERE {' AND '.join(where)} "
        f"ORDER BY d.device_id LIMIT {int(limit)}"
    )
    return list(await conn.fetch(sql, *args))


async def get_device(conn: Any, cfg: RollupConfig, device_id: str, now: datetime) -> Any:
    """One device (decommissioned too) with its online flag, or None."""
    return await conn.fetchrow(
        f"SELECT {_COLUMNS}, {_online_sql(cfg, '$2')} AS online FROM devices d WHERE d.device_id = $1",
        device_id,
        now,
    )
