"""Database side of the rollup: read the facts it needs, store and read snapshots.

Reads go through whatever asyncpg connection or pool the caller passes. With
TimescaleDB the energy registers of whole hours come from the hourly continuous
aggregate `readings_datacenter_registers_hourly`; on plain PostgreSQL from the
samples. Both give energy.meter_energy's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from adapters import CLASSES
from ingest.config import RollupConfig
from ingest.indicators.alarms import Latest
from ingest.indicators.compute import DeviceFacts, RollupResult
from ingest.indicators.energy import BUCKET, Energy, Segment, bucket_of, register_energy
from ingest.indicators.regions import normalise

DEVICES = """
SELECT d.device_id, d.class, d.region, d.provisioned, d.first_seen IS NOT NULL AS reported,
       d.last_seen, d.status, d.status_at,
       COALESCE(d.attributes -> 'pue_category', d.meta -> 'pue_category') AS pue_category,
       COALESCE(d.attributes ->> 'demo_project', d.meta ->> 'demo_project') AS demo_project,
       d.attributes -> 'racks_built' AS attr_racks_built,
       d.attributes -> 'racks_in_service' AS attr_racks_in_service
FROM devices d
WHERE d.decommissioned_at IS NULL
"""


def _automated_sql() -> str:
    """Devices automated under their class's declared rule (DeviceClass.automation;
    DOMAIN.md: a reservoir once it sent an automatic report with level and rain).
    The registry marks automatic reports; the readings tell that one carried a
    metric of every group."""
    parts = []
    for c in CLASSES:
        if not c.automation:
            continue
        groups = " AND ".join(
            "(" + " OR ".join(f"r.{name} IS NOT NULL" for name in group) + ")" for group in c.automation
        )
        parts.append(f"""SELECT d.device_id
FROM devices d
WHERE d.class = '{c.name}' AND d.decommissioned_at IS NULL AND d.automated_at IS NOT NULL
  AND EXISTS (SELECT 1 FROM {c.table} r WHERE r.device_id = d.device_id AND r.point = ''
              AND {groups})""")
    return "\nUNION ALL\n".join(parts)


AUTOMATED = _automated_sql()

RACKS = """
SELECT d.device_id,
       (SELECT r.racks_built FROM readings_datacenter r
        WHERE r.device_id = d.device_id AND r.point = '' AND r.racks_built IS NOT NULL AND r.ts <= $1
        ORDER BY r.ts DESC LIMIT 1) AS racks_built,
       (SELECT r.racks_in_service FROM readings_datacenter r
        WHERE r.device_id = d.device_id AND r.point = '' AND r.racks_in_service IS NOT NULL AND r.ts <= $1
        ORDER BY r.ts DESC LIMIT 1) AS racks_in_service
FROM devices d
WHERE d.class = 'datacenter' AND d.decommissioned_at IS NULL
"""

# The meters' hourly segments (energy.meter_energy's rule) straight from the samples
# in (start, end] whose time is before $3 or from $4 on: every sample on the sample
# path ($3 = $4), the window's partial first and last hours on the bucket path. The
# same columns as the register aggregate; first/last by array_agg, which plain
# PostgreSQL has (TimescaleDB's first()/last() it has not).
SAMPLE_SEGMENTS = """
SELECT device_id,
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00+00') AS bucket,
       min(ts) AS ts_first, max(ts) AS ts_last,
       (array_agg(facility_energy_kwh ORDER BY ts))[1] AS facility_first,
       (array_agg(facility_energy_kwh ORDER BY ts DESC))[1] AS facility_last,
       min(facility_energy_kwh) AS facility_min, max(facility_energy_kwh) AS facility_max,
       (array_agg(it_energy_kwh ORDER BY ts))[1] AS it_first,
       (array_agg(it_energy_kwh ORDER BY ts DESC))[1] AS it_last,
       min(it_energy_kwh) AS it_min, max(it_energy_kwh) AS it_max
FROM readings_datacenter
WHERE point = '' AND facility_energy_kwh IS NOT NULL AND it_energy_kwh IS NOT NULL
  AND ts > $1 AND ts <= $2 AND (ts < $3 OR ts >= $4)
GROUP BY 1, 2
"""

# The whole hours inside the window, [$3, $4), from the hourly register aggregate
# (a continuous aggregate with TimescaleDB, a view with its columns on plain).
BUCKETS = """
SELECT device_id, bucket, ts_first, ts_last, facility_first, facility_last, facility_min, facility_max,
       it_first, it_last, it_min, it_max
FROM readings_datacenter_registers_hourly
WHERE bucket >= $1 AND bucket < $2
"""


# Latest values within each class's online window ($2, $3, $4 seconds), and thresholds
# (provisioned attributes win over hints).
LATEST = """
WITH res AS (
    SELECT DISTINCT ON (device_id) device_id, level_m
    FROM readings_reservoir
    WHERE point = '' AND level_m IS NOT NULL
     AND ts > $1::timestamptz - make_interval(secs => $2) AND ts <= $1::timestamptz
    ORDER BY device_id, ts DESC
), ice AS (
    SELECT DISTINCT ON (device_id) device_id, ice_thickness_mm
    FROM readings_power_line
    WHERE point = '' AND ice_thickness_mm IS NOT NULL
     AND ts > $1::timestamptz - make_interval(secs => $3) AND ts <= $1::timestamptz
    ORDER BY device_id, ts DESC
), hot AS (
    SELECT DISTINCT ON (device_id) device_id, conductor_temp_c
    FROM readings_power_line
    WHERE point = '' AND conductor_temp_c IS NOT NULL
     AND ts > $1::timestamptz - make_interval(secs => $3) AND ts <= $1::timestamptz
    ORDER BY device_id, ts DESC
), connectors AS (
    SELECT DISTINCT ON (device_id, point) device_id, value
    FROM state_events
    WHERE class = 'charger' AND name = 'status' AND point <> '0'
     AND ts > $1::timestamptz - make_interval(secs => $4) AND ts <= $1::timestamptz
    ORDER BY device_id, point, ts DESC
), faulted AS (
    SELECT DISTINCT device_id FROM connectors WHERE value = 'Faulted'
)
SELECT d.device_id, d.class, d.region, res.level_m, ice.ice_thickness_mm, hot.conductor_temp_c,
       faulted.device_id IS NOT NULL AS faulted,
       COALESCE(d.attributes -> 'flood_limit_level_m', d.meta -> 'flood_limit_level_m') AS flood_limit,
       COALESCE(d.attributes -> 'design_ice_mm', d.meta -> 'design_ice_mm') AS design_ice
FROM devices d
LEFT JOIN res ON res.device_id = d.device_id
LEFT JOIN ice ON ice.device_id = d.device_id
LEFT JOIN hot ON hot.device_id = d.device_id
LEFT JOIN faulted ON faulted.device_id = d.device_id
WHERE d.decommissioned_at IS NULL
  AND (res.device_id IS NOT NULL OR ice.device_id IS NOT NULL OR hot.device_id IS NOT NULL
       OR faulted.device_id IS NOT NULL)
"""


def _num(value: Any) -> float | None:
    """A JSON attribute as a number (jsonb comes back as text)."""
    if value is None:
        return None
    try:
        parsed = orjson.loads(value) if isinstance(value, str) else value
    except orjson.JSONDecodeError:
        return None
    return float(parsed) if isinstance(parsed, int | float) and not isinstance(parsed, bool) else None


async def uses_timescale(conn: Any) -> bool:
    variant = await conn.fetchval("SELECT variant FROM schema_migrations WHERE version = 2")
    return bool(variant == "timescale")


async def device_facts(conn: Any, cfg: RollupConfig, now: datetime) -> list[DeviceFacts]:
    automated = {r["device_id"] for r in await conn.fetch(AUTOMATED)}
    racks = {r["device_id"]: r for r in await conn.fetch(RACKS, now)}
    out = []
    for r in await conn.fetch(DEVICES):
        cls = r["class"]
        try:
            window = timedelta(seconds=cfg.online_s(cls))
        except AttributeError:
            continue  # a class this version does not serve
        last_seen = r["last_seen"]
        gone = r["status"] == "offline"
        online = last_seen is not None and now - last_seen <= window and last_seen <= now and not gone
        category = _num(r["pue_category"])
        built = _num(r["attr_racks_built"])
        in_service: float | None = None
        if r["device_id"] in racks:
            rr = racks[r["device_id"]]
            built = built if built is not None else rr["racks_built"]
            in_service = rr["racks_in_service"]
        if in_service is None:
            in_service = _num(r["attr_racks_in_service"])
        out.append(
            DeviceFacts(
                device_id=r["device_id"],
                device_class=cls,
                region=normalise(r["region"]),
                provisioned=r["provisioned"],
                reported=r["reported"],
                online=online,
                automated=r["device_id"] in automated,
                racks_built=built,
                racks_in_service=in_service,
                pue_category=int(category) if category is not None else None,
                demo=r["demo_project"] == "yes",
            )
        )
    return out


async def latest_values(conn: Any, cfg: RollupConfig, now: datetime) -> list[Latest]:
    rows = await conn.fetch(
        LATEST,
        now,
        float(cfg.online_s("reservoir")),
        float(cfg.online_s("power_line")),
        float(cfg.online_s("charger")),
    )
    return [
        Latest(
            device_id=r["device_id"],
            device_class=r["class"],
            region=normalise(r["region"]),
            level_m=r["level_m"],
            flood_limit_level_m=_num(r["flood_limit"]),
            ice_thickness_mm=r["ice_thickness_mm"],
            design_ice_mm=_num(r["design_ice"]),
            conductor_temp_c=r["conductor_temp_c"],
            faulted=r["faulted"],
        )
        for r in rows
    ]


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[lo, hi): the hourly buckets that lie wholly inside (start, end]. A bucket that
    starts at `start` is not whole: its first instant is outside the window."""
    return bucket_of(start) + BUCKET, bucket_of(end)


async def energies(conn: Any, start: datetime, end: datetime, buckets: bool) -> dict[str, Energy]:
    """Energy of every data-centre meter over (start, end] by energy.meter_energy's
    rule: its whole hours from the hourly register aggregate (`buckets`, what
    TimescaleDB answers cheaply), the rest from the samples."""
    lo, hi = whole_hours(start, end)
    rows = []
    if buckets and lo < hi:
        rows += await conn.fetch(BUCKETS, lo, hi)
        rows += await conn.fetch(SAMPLE_SEGMENTS, start, end, lo, hi)
    else:
        rows += await conn.fetch(SAMPLE_SEGMENTS, start, end, start, start)
    rows.sort(key=lambda r: (r["device_id"], r["bucket"]))
    series: dict[str, list[Segment]] = {}
    for r in rows:
        series.setdefault(r["device_id"], []).append(
            Segment(
                r["ts_first"], r["ts_last"],
                r["facility_first"], r["facility_last"], r["it_first"], r["it_last"],
                r["facility_min"], r["facility_max"], r["it_min"], r["it_max"],
            )
        )  # fmt: skip
    return {dev: register_energy(segs) for dev, segs in series.items()}


async def save(conn: Any, result: RollupResult) -> None:
    ts = result.as_of
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO indicator_snapshots (ts, indicator, region, value, interim, inputs) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT DO NOTHING",
            [
                (ts, key, region, f.value, f.interim, orjson.dumps(dict(f.inputs)).decode())
                for (key, region), f in result.figures.items()
            ],
        )
        await conn.executemany(
            "INSERT INTO fleet_snapshots (ts, class, region, built, online) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [(ts, cls, region, b, o) for (cls, region), (b, o) in result.fleet.items()],
        )


async def history(
    conn: Any, indicator: str, region: str, start: datetime, end: datetime, step: timedelta
) -> list[Mapping[str, Any]]:
    """The last snapshot of each `step` between start and end."""
    rows: list[Mapping[str, Any]] = await conn.fetch(
        """SELECT DISTINCT ON (bucket)
                  date_bin($5::interval, ts, TIMESTAMPTZ '2000-01-01 00:00+08') AS bucket,
                  ts, value, interim
           FROM indicator_snapshots
           WHERE indicator = $1 AND region = $2 AND ts >= $3 AND ts <= $4
           ORDER BY bucket, ts DESC""",
        indicator,
        region,
        start,
        end,
        step,
    )
    return rows
