-- 005 aggregates, plain PostgreSQL: the hourly register aggregate of 002 as a view
-- with its name and columns, so that the rollup's bucket path runs (and is tested)
-- here too. first/last by array_agg: TimescaleDB's first()/last() are not here.

CREATE OR REPLACE VIEW readings_datacenter_registers_hourly AS
SELECT
    date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00+00') AS bucket,
    device_id,
    min(ts) AS ts_first,
    max(ts) AS ts_last,
    count(*) AS n,
    (array_agg(facility_energy_kwh ORDER BY ts))[1] AS facility_first,
    (array_agg(facility_energy_kwh ORDER BY ts DESC))[1] AS facility_last,
    min(facility_energy_kwh) AS facility_min,
    max(facility_energy_kwh) AS facility_max,
    (array_agg(it_energy_kwh ORDER BY ts))[1] AS it_first,
    (array_agg(it_energy_kwh ORDER BY ts DESC))[1] AS it_last,
    min(it_energy_kwh) AS it_min,
    max(it_energy_kwh) AS it_max
FROM readings_datacenter
WHERE point = '' AND facility_energy_kwh IS NOT NULL AND it_energy_kwh IS NOT NULL
GROUP BY 1, 2;
