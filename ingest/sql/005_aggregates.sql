-- 005 aggregates: late readings reach the rollups, and one PUE rule on both variants.
-- Portable PostgreSQL (15+); the TimescaleDB part is 005_aggregates.timescale.sql.

-- Time ranges of readings written older than the refresh policies' windows, per
-- hypertable (ingest/aggregates.py). The writer adds a row in the commit of a batch
-- that carried such readings; a periodic job refreshes the continuous aggregates of
-- exactly those ranges and deletes the rows. On plain PostgreSQL the rollups are
-- views, always current: the job only deletes.
CREATE TABLE IF NOT EXISTS late_ranges (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hypertable  text NOT NULL,           -- readings_<class>
    lo          timestamptz NOT NULL,    -- oldest late reading of the batch
    hi          timestamptz NOT NULL,    -- newest late reading of the batch
    recorded_at timestamptz NOT NULL DEFAULT now()
);
