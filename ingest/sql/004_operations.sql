-- 004 operations: dead letters an integrator can filter and replay, and the audit trail.
-- Portable PostgreSQL (15+).

-- The class and device of a dead letter, from its topic (<prefix>/v1/<class>/<device>/...):
-- empty where the topic has no such level. Stored so that the API's filters and a
-- device's latest refusal are index look-ups.
ALTER TABLE dead_letters
    ADD COLUMN IF NOT EXISTS device_class text GENERATED ALWAYS AS (split_part(topic, '/', 3)) STORED,
    ADD COLUMN IF NOT EXISTS device_id text GENERATED ALWAYS AS (split_part(topic, '/', 4)) STORED,
    -- set when a replay stored the message (ingest dead-letters replay): kept, not deleted,
    -- so that what was refused stays inspectable until the retention removes it
    ADD COLUMN IF NOT EXISTS replayed_at timestamptz;
CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device_id, received_at);
CREATE INDEX IF NOT EXISTS dead_letters_class ON dead_letters (device_class, received_at);

-- Who changed what: provisioning, decommissioning and replays, with the API token's
-- name (or `cli:<user>` for the command line).
CREATE TABLE IF NOT EXISTS audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,          -- provision, decommission, replay
    target  text NOT NULL,          -- a device id, or the replay's filter
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
