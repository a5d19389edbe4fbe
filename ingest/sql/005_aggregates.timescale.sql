-- 005 aggregates, TimescaleDB: the refresh policies only ever looked back 3 days
-- (hourly) and 7 days (daily), so readings stored older than that (a backfill, a
-- meter catching up) never reached the aggregates. Record the whole history of every
-- hypertable that has continuous aggregates as late: the refresh job brings it in
-- (refresh_continuous_aggregate cannot run inside this migration's transaction).
DO $$
DECLARE
    t  text;
    lo timestamptz;
    hi timestamptz;
BEGIN
    FOR t IN SELECT DISTINCT hypertable_name FROM timescaledb_information.continuous_aggregates
             WHERE hypertable_schema = current_schema() ORDER BY 1 LOOP
        EXECUTE format('SELECT min(ts), max(ts) FROM %I', t) INTO lo, hi;
        IF lo IS NOT NULL THEN
            INSERT INTO late_ranges (hypertable, lo, hi) VALUES (t, lo, hi);
        END IF;
    END LOOP;
END
$$;
