-- 002 indicators: provisioning columns on devices, and the rollup snapshots.
-- Portable PostgreSQL (15+); the TimescaleDB part is 002_indicators.timescale.sql.

-- Operators provision devices before their first message: such a row has not been
-- seen yet, so first_seen / last_seen become optional (NULL = never reported).
ALTER TABLE devices ALTER COLUMN first_seen DROP NOT NULL;
ALTER TABLE devices ALTER COLUMN last_seen DROP NOT NULL;
-- Provisioned class attributes (flood-limit level, rated power, PUE category, racks,
-- design ice ...); they win over the payload hints kept in `meta`.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS attributes jsonb NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN IF NOT EXISTS provisioned_at timestamptz;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS decommissioned_at timestamptz;  -- not counted while set
CREATE INDEX IF NOT EXISTS devices_class_device ON devices (class, device_id);

-- One row per indicator, region and rollup: the history of the plan's figures.
CREATE TABLE IF NOT EXISTS indicator_snapshots (
    ts        timestamptz NOT NULL,          -- the rollup's as-of time
    indicator text NOT NULL,                 -- catalogue key
    region    text NOT NULL,                 -- 520000, a prefecture code, guian or unknown
    value     double precision,              -- NULL when there is nothing to compute it from
    interim   boolean NOT NULL DEFAULT false, -- short window or low coverage (PUE)
    inputs    jsonb NOT NULL DEFAULT '{}',   -- the sums the value was computed from
    PRIMARY KEY (indicator, region, ts)
);

-- Devices built (reported at least once) and online, per class and region and rollup.
CREATE TABLE IF NOT EXISTS fleet_snapshots (
    ts     timestamptz NOT NULL,
    class  text NOT NULL,
    region text NOT NULL,
    built  integer NOT NULL,
    online integer NOT NULL,
    PRIMARY KEY (class, region, ts)
);
