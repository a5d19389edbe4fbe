-- A refused message that the broker delivers again (after a restart, a worker's
-- crash) is the same refusal: a dead letter is stored once per distinct topic and
-- payload. The digest is computed by the database, so every writer agrees on it; the
-- topic enters as its fixed-length MD5 (immutable, unlike convert_to), so topic and
-- payload cannot run into each other.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS digest bytea
    GENERATED ALWAYS AS (sha256(decode(md5(topic), 'hex') || payload)) STORED;
DELETE FROM dead_letters d USING dead_letters e WHERE d.digest = e.digest AND d.id > e.id;
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_digest ON dead_letters (digest);
