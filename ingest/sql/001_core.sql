-- 001 core: device registry, per-class readings, state events, dead letters.
-- Portable PostgreSQL (15+). The TimescaleDB part is 001_core.timescale.sql,
-- applied instead of 001_core.plain.sql when the extension is available.

CREATE TABLE IF NOT EXISTS devices (
    device_id   text PRIMARY KEY,
    class       text NOT NULL,
    first_seen  timestamptz NOT NULL,          -- first accepted message (received)
    last_seen   timestamptz NOT NULL,          -- last accepted message (received)
    last_ts     timestamptz,                   -- newest reading's own timestamp
    region      text,                          -- from provisioning or the meta hint
    site        text,
    name        text,
    provisioned boolean NOT NULL DEFAULT false, -- provisioned attributes win over hints
    meta        jsonb NOT NULL DEFAULT '{}',   -- latest hints from payloads
    status      text CHECK (status IN ('online', 'offline')),
    status_at   timestamptz,
    automated_at timestamptz                   -- first automatic report (not manual entry)
);
CREATE INDEX IF NOT EXISTS devices_class_region ON devices (class, region);

CREATE TABLE IF NOT EXISTS state_events (
    device_id text NOT NULL,
    class     text NOT NULL,
    ts        timestamptz NOT NULL,
    point     text NOT NULL DEFAULT '',
    name      text NOT NULL,
    value     text NOT NULL
);
DO $$
BEGIN
    IF to_regclass('state_events_key') IS NULL THEN
        CREATE UNIQUE INDEX state_events_key ON state_events (device_id, point, name, ts);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason, received_at);

CREATE TABLE IF NOT EXISTS readings_reservoir (
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    point     text NOT NULL DEFAULT '',   -- '' for the device, else one of several sensors
    seq       bigint,
    rain_5min_mm           double precision,  -- mm, rainfall in the last 5 minutes
    rain_1h_mm             double precision,  -- mm, rainfall in the last hour
    rain_cum_mm            double precision,  -- mm, cumulative rainfall register
    level_m                double precision,  -- m, reservoir water level above sea level
    seepage_pressure_m     double precision,  -- m, seepage pressure head
    seepage_flow_lps       double precision,  -- L/s, seepage flow
    displacement_mm        double precision,  -- mm, surface displacement
    battery_v              double precision  -- V, supply voltage
);
-- The idempotency key: the same device, point and time written twice is one row.
DO $$
BEGIN
    IF to_regclass('readings_reservoir_key') IS NULL THEN
        CREATE UNIQUE INDEX readings_reservoir_key ON readings_reservoir (device_id, point, ts);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS readings_power_line (
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    point     text NOT NULL DEFAULT '',   -- '' for the device, else one of several sensors
    seq       bigint,
    conductor_temp_c       double precision,  -- °C, conductor temperature
    ice_thickness_mm       double precision,  -- mm, equivalent ice thickness
    tension_n              double precision,  -- N, hanging load / tension
    windage_deg            double precision,  -- °, windage (swing) angle
    sag_m                  double precision,  -- m, conductor sag
    wind_speed_ms          double precision,  -- m/s, 10-minute average wind speed
    air_temp_c             double precision,  -- °C, air temperature
    humidity_pct           double precision,  -- %, relative humidity
    tilt_mm_per_m          double precision,  -- mm/m, tower tilt
    battery_v              double precision  -- V, supply voltage
);
-- The idempotency key: the same device, point and time written twice is one row.
DO $$
BEGIN
    IF to_regclass('readings_power_line_key') IS NULL THEN
        CREATE UNIQUE INDEX readings_power_line_key ON readings_power_line (device_id, point, ts);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS readings_charger (
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    point     text NOT NULL DEFAULT '',   -- '' for the device, else one of several sensors
    seq       bigint,
    energy_wh              double precision,  -- Wh, active energy import register
    power_w                double precision,  -- W, active power
    current_a              double precision,  -- A, current
    voltage_v              double precision,  -- V, voltage
    soc_pct                double precision,  -- %, vehicle state of charge
    temp_c                 double precision  -- °C, temperature
);
-- The idempotency key: the same device, point and time written twice is one row.
DO $$
BEGIN
    IF to_regclass('readings_charger_key') IS NULL THEN
        CREATE UNIQUE INDEX readings_charger_key ON readings_charger (device_id, point, ts);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS readings_datacenter (
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    point     text NOT NULL DEFAULT '',   -- '' for the device, else one of several sensors
    seq       bigint,
    facility_energy_kwh    double precision,  -- kWh, total facility energy register
    it_energy_kwh          double precision,  -- kWh, IT energy register
    facility_power_kw      double precision,  -- kW, total facility power
    it_power_kw            double precision,  -- kW, IT power
    racks_built            double precision,  -- racks, standard racks built (2.5 kW each)
    racks_in_service       double precision  -- racks, standard racks in service
);
-- The idempotency key: the same device, point and time written twice is one row.
DO $$
BEGIN
    IF to_regclass('readings_datacenter_key') IS NULL THEN
        CREATE UNIQUE INDEX readings_datacenter_key ON readings_datacenter (device_id, point, ts);
    END IF;
END
$$;
