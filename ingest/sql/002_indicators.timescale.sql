-- 002 indicators, TimescaleDB: snapshots as hypertables, and an hourly continuous
-- aggregate of the energy registers with first/last/min/max, from which the rollup
-- computes PUE without reading every 15-minute sample (a bucket whose first is not
-- its minimum, or last not its maximum, had a register reset and is left out).

SELECT create_hypertable('indicator_snapshots', 'ts', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('fleet_snapshots', 'ts', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => TRUE, migrate_data => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_datacenter_registers_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    device_id,
    min(ts) AS ts_first,
    max(ts) AS ts_last,
    count(*) AS n,
    first(facility_energy_kwh, ts) AS facility_first,
    last(facility_energy_kwh, ts) AS facility_last,
    min(facility_energy_kwh) AS facility_min,
    max(facility_energy_kwh) AS facility_max,
    first(it_energy_kwh, ts) AS it_first,
    last(it_energy_kwh, ts) AS it_last,
    min(it_energy_kwh) AS it_min,
    max(it_energy_kwh) AS it_max
FROM readings_datacenter
WHERE point = '' AND facility_energy_kwh IS NOT NULL AND it_energy_kwh IS NOT NULL
GROUP BY 1, 2
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_datacenter_registers_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
