-- The workers that keep rows in device_connections, and when each last said it is
-- alive (the database's clock; ingest/sources/connections.py). A worker refreshes its
-- row every 10 s; the API marks a connection stale once its worker has been silent
-- for 30 s, and any worker's heartbeat removes the rows of workers silent for 10
-- minutes, so a worker that is gone for good leaves no connections behind.
CREATE TABLE IF NOT EXISTS edge_workers (
    worker    text NOT NULL,
    transport text NOT NULL CHECK (transport IN ('ocpp', 'sl651')),
    seen_at   timestamptz NOT NULL,
    PRIMARY KEY (worker, transport)
);

-- The workers that wrote connections before this migration count as seen now: a live
-- one refreshes its row, a dead one's rows go 10 minutes later.
INSERT INTO edge_workers (worker, transport, seen_at)
SELECT DISTINCT worker, transport, now() FROM device_connections
ON CONFLICT (worker, transport) DO NOTHING;
