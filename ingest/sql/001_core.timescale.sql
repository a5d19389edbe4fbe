-- 001 core, TimescaleDB: hypertables, compression (columnstore) policy, hourly and
-- daily continuous aggregates, retention. Uses the TimescaleDB 2.x API (2.11+).

SELECT create_hypertable('readings_reservoir', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings_reservoir'
                     AND compression_enabled) THEN
        ALTER TABLE readings_reservoir SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id, point',
            timescaledb.compress_orderby = 'ts DESC'
        );
    END IF;
END
$$;
SELECT add_compression_policy('readings_reservoir', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('readings_reservoir', INTERVAL '1095 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_reservoir_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    device_id,
    point,
    count(*) AS n,
    avg(rain_5min_mm) AS rain_5min_mm_avg,
    min(rain_5min_mm) AS rain_5min_mm_min,
    max(rain_5min_mm) AS rain_5min_mm_max,
    avg(rain_1h_mm) AS rain_1h_mm_avg,
    min(rain_1h_mm) AS rain_1h_mm_min,
    max(rain_1h_mm) AS rain_1h_mm_max,
    min(rain_cum_mm) AS rain_cum_mm_min,
    max(rain_cum_mm) AS rain_cum_mm_max,
    avg(level_m) AS level_m_avg,
    min(level_m) AS level_m_min,
    max(level_m) AS level_m_max,
    avg(seepage_pressure_m) AS seepage_pressure_m_avg,
    min(seepage_pressure_m) AS seepage_pressure_m_min,
    max(seepage_pressure_m) AS seepage_pressure_m_max,
    avg(seepage_flow_lps) AS seepage_flow_lps_avg,
    min(seepage_flow_lps) AS seepage_flow_lps_min,
    max(seepage_flow_lps) AS seepage_flow_lps_max,
    avg(displacement_mm) AS displacement_mm_avg,
    min(displacement_mm) AS displacement_mm_min,
    max(displacement_mm) AS displacement_mm_max,
    avg(battery_v) AS battery_v_avg,
    min(battery_v) AS battery_v_min,
    max(battery_v) AS battery_v_max
FROM readings_reservoir
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_reservoir_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_reservoir_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 day', ts, 'Asia/Shanghai') AS bucket,
    device_id,
    point,
    count(*) AS n,
    avg(rain_5min_mm) AS rain_5min_mm_avg,
    min(rain_5min_mm) AS rain_5min_mm_min,
    max(rain_5min_mm) AS rain_5min_mm_max,
    avg(rain_1h_mm) AS rain_1h_mm_avg,
    min(rain_1h_mm) AS rain_1h_mm_min,
    max(rain_1h_mm) AS rain_1h_mm_max,
    min(rain_cum_mm) AS rain_cum_mm_min,
    max(rain_cum_mm) AS rain_cum_mm_max,
    avg(level_m) AS level_m_avg,
    min(level_m) AS level_m_min,
    max(level_m) AS level_m_max,
    avg(seepage_pressure_m) AS seepage_pressure_m_avg,
    min(seepage_pressure_m) AS seepage_pressure_m_min,
    max(seepage_pressure_m) AS seepage_pressure_m_max,
    avg(seepage_flow_lps) AS seepage_flow_lps_avg,
    min(seepage_flow_lps) AS seepage_flow_lps_min,
    max(seepage_flow_lps) AS seepage_flow_lps_max,
    avg(displacement_mm) AS displacement_mm_avg,
    min(displacement_mm) AS displacement_mm_min,
    max(displacement_mm) AS displacement_mm_max,
    avg(battery_v) AS battery_v_avg,
    min(battery_v) AS battery_v_min,
    max(battery_v) AS battery_v_max
FROM readings_reservoir
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_reservoir_daily',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 day', if_not_exists => TRUE);

SELECT create_hypertable('readings_power_line', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings_power_line'
                     AND compression_enabled) THEN
        ALTER TABLE readings_power_line SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id, point',
            timescaledb.compress_orderby = 'ts DESC'
        );
    END IF;
END
$$;
SELECT add_compression_policy('readings_power_line', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('readings_power_line', INTERVAL '1095 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_power_line_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    device_id,
    point,
    count(*) AS n,
    avg(conductor_temp_c) AS conductor_temp_c_avg,
    min(conductor_temp_c) AS conductor_temp_c_min,
    max(conductor_temp_c) AS conductor_temp_c_max,
    avg(ice_thickness_mm) AS ice_thickness_mm_avg,
    min(ice_thickness_mm) AS ice_thickness_mm_min,
    max(ice_thickness_mm) AS ice_thickness_mm_max,
    avg(tension_n) AS tension_n_avg,
    min(tension_n) AS tension_n_min,
    max(tension_n) AS tension_n_max,
    avg(windage_deg) AS windage_deg_avg,
    min(windage_deg) AS windage_deg_min,
    max(windage_deg) AS windage_deg_max,
    avg(sag_m) AS sag_m_avg,
    min(sag_m) AS sag_m_min,
    max(sag_m) AS sag_m_max,
    avg(wind_speed_ms) AS wind_speed_ms_avg,
    min(wind_speed_ms) AS wind_speed_ms_min,
    max(wind_speed_ms) AS wind_speed_ms_max,
    avg(air_temp_c) AS air_temp_c_avg,
    min(air_temp_c) AS air_temp_c_min,
    max(air_temp_c) AS air_temp_c_max,
    avg(humidity_pct) AS humidity_pct_avg,
    min(humidity_pct) AS humidity_pct_min,
    max(humidity_pct) AS humidity_pct_max,
    avg(tilt_mm_per_m) AS tilt_mm_per_m_avg,
    min(tilt_mm_per_m) AS tilt_mm_per_m_min,
    max(tilt_mm_per_m) AS tilt_mm_per_m_max,
    avg(battery_v) AS battery_v_avg,
    min(battery_v) AS battery_v_min,
    max(battery_v) AS battery_v_max
FROM readings_power_line
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_power_line_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_power_line_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 day', ts, 'Asia/Shanghai') AS bucket,
    device_id,
    point,
    count(*) AS n,
    avg(conductor_temp_c) AS conductor_temp_c_avg,
    min(conductor_temp_c) AS conductor_temp_c_min,
    max(conductor_temp_c) AS conductor_temp_c_max,
    avg(ice_thickness_mm) AS ice_thickness_mm_avg,
    min(ice_thickness_mm) AS ice_thickness_mm_min,
    max(ice_thickness_mm) AS ice_thickness_mm_max,
    avg(tension_n) AS tension_n_avg,
    min(tension_n) AS tension_n_min,
    max(tension_n) AS tension_n_max,
    avg(windage_deg) AS windage_deg_avg,
    min(windage_deg) AS windage_deg_min,
    max(windage_deg) AS windage_deg_max,
    avg(sag_m) AS sag_m_avg,
    min(sag_m) AS sag_m_min,
    max(sag_m) AS sag_m_max,
    avg(wind_speed_ms) AS wind_speed_ms_avg,
    min(wind_speed_ms) AS wind_speed_ms_min,
    max(wind_speed_ms) AS wind_speed_ms_max,
    avg(air_temp_c) AS air_temp_c_avg,
    min(air_temp_c) AS air_temp_c_min,
    max(air_temp_c) AS air_temp_c_max,
    avg(humidity_pct) AS humidity_pct_avg,
    min(humidity_pct) AS humidity_pct_min,
    max(humidity_pct) AS humidity_pct_max,
    avg(tilt_mm_per_m) AS tilt_mm_per_m_avg,
    min(tilt_mm_per_m) AS tilt_mm_per_m_min,
    max(tilt_mm_per_m) AS tilt_mm_per_m_max,
    avg(battery_v) AS battery_v_avg,
    min(battery_v) AS battery_v_min,
    max(battery_v) AS battery_v_max
FROM readings_power_line
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_power_line_daily',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 day', if_not_exists => TRUE);

SELECT create_hypertable('readings_charger', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings_charger'
                     AND compression_enabled) THEN
        ALTER TABLE readings_charger SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id, point',
            timescaledb.compress_orderby = 'ts DESC'
        );
    END IF;
END
$$;
SELECT add_compression_policy('readings_charger', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('readings_charger', INTERVAL '1095 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_charger_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    device_id,
    point,
    count(*) AS n,
    min(energy_wh) AS energy_wh_min,
    max(energy_wh) AS energy_wh_max,
    avg(power_w) AS power_w_avg,
    min(power_w) AS power_w_min,
    max(power_w) AS power_w_max,
    avg(current_a) AS current_a_avg,
    min(current_a) AS current_a_min,
    max(current_a) AS current_a_max,
    avg(voltage_v) AS voltage_v_avg,
    min(voltage_v) AS voltage_v_min,
    max(voltage_v) AS voltage_v_max,
    avg(soc_pct) AS soc_pct_avg,
    min(soc_pct) AS soc_pct_min,
    max(soc_pct) AS soc_pct_max,
    avg(temp_c) AS temp_c_avg,
    min(temp_c) AS temp_c_min,
    max(temp_c) AS temp_c_max
FROM readings_charger
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_charger_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_charger_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 day', ts, 'Asia/Shanghai') AS bucket,
    device_id,
    point,
    count(*) AS n,
    min(energy_wh) AS energy_wh_min,
    max(energy_wh) AS energy_wh_max,
    avg(power_w) AS power_w_avg,
    min(power_w) AS power_w_min,
    max(power_w) AS power_w_max,
    avg(current_a) AS current_a_avg,
    min(current_a) AS current_a_min,
    max(current_a) AS current_a_max,
    avg(voltage_v) AS voltage_v_avg,
    min(voltage_v) AS voltage_v_min,
    max(voltage_v) AS voltage_v_max,
    avg(soc_pct) AS soc_pct_avg,
    min(soc_pct) AS soc_pct_min,
    max(soc_pct) AS soc_pct_max,
    avg(temp_c) AS temp_c_avg,
    min(temp_c) AS temp_c_min,
    max(temp_c) AS temp_c_max
FROM readings_charger
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_charger_daily',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 day', if_not_exists => TRUE);

SELECT create_hypertable('readings_datacenter', 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings_datacenter'
                     AND compression_enabled) THEN
        ALTER TABLE readings_datacenter SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id, point',
            timescaledb.compress_orderby = 'ts DESC'
        );
    END IF;
END
$$;
SELECT add_compression_policy('readings_datacenter', INTERVAL '7 days', if_not_exists => TRUE);
SELECT add_retention_policy('readings_datacenter', INTERVAL '1095 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_datacenter_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 hour', ts) AS bucket,
    device_id,
    point,
    count(*) AS n,
    min(facility_energy_kwh) AS facility_energy_kwh_min,
    max(facility_energy_kwh) AS facility_energy_kwh_max,
    min(it_energy_kwh) AS it_energy_kwh_min,
    max(it_energy_kwh) AS it_energy_kwh_max,
    avg(facility_power_kw) AS facility_power_kw_avg,
    min(facility_power_kw) AS facility_power_kw_min,
    max(facility_power_kw) AS facility_power_kw_max,
    avg(it_power_kw) AS it_power_kw_avg,
    min(it_power_kw) AS it_power_kw_min,
    max(it_power_kw) AS it_power_kw_max,
    avg(racks_built) AS racks_built_avg,
    min(racks_built) AS racks_built_min,
    max(racks_built) AS racks_built_max,
    avg(racks_in_service) AS racks_in_service_avg,
    min(racks_in_service) AS racks_in_service_min,
    max(racks_in_service) AS racks_in_service_max
FROM readings_datacenter
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_datacenter_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_datacenter_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 day', ts, 'Asia/Shanghai') AS bucket,
    device_id,
    point,
    count(*) AS n,
    min(facility_energy_kwh) AS facility_energy_kwh_min,
    max(facility_energy_kwh) AS facility_energy_kwh_max,
    min(it_energy_kwh) AS it_energy_kwh_min,
    max(it_energy_kwh) AS it_energy_kwh_max,
    avg(facility_power_kw) AS facility_power_kw_avg,
    min(facility_power_kw) AS facility_power_kw_min,
    max(facility_power_kw) AS facility_power_kw_max,
    avg(it_power_kw) AS it_power_kw_avg,
    min(it_power_kw) AS it_power_kw_min,
    max(it_power_kw) AS it_power_kw_max,
    avg(racks_built) AS racks_built_avg,
    min(racks_built) AS racks_built_min,
    max(racks_built) AS racks_built_max,
    avg(racks_in_service) AS racks_in_service_avg,
    min(racks_in_service) AS racks_in_service_min,
    max(racks_in_service) AS racks_in_service_max
FROM readings_datacenter
GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_datacenter_daily',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 day', if_not_exists => TRUE);

SELECT create_hypertable('state_events', 'ts', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
-- TimescaleDB requires the columns of a unique index in segmentby or orderby.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'state_events'
                     AND compression_enabled) THEN
        ALTER TABLE state_events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id, name',
            timescaledb.compress_orderby = 'ts DESC, point'
        );
    END IF;
END
$$;
SELECT add_compression_policy('state_events', INTERVAL '14 days', if_not_exists => TRUE);
SELECT add_retention_policy('state_events', INTERVAL '1095 days', if_not_exists => TRUE);
