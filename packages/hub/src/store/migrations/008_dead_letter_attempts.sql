-- Dead letters from every source (packages/hub/src/dead-letters/): `hub` for what ingest refused,
-- `subscriber` for what a consumer gave up on and sent to herald.dead, with the queue it died on
-- when known; how many attempts were made and when the first and the last failed (NULL: at `at`,
-- as for the hub's own, tried once); and, for those taken from herald.dead, a key made from the
-- message, so that a redelivered one is kept once.
ALTER TABLE dead_letters ADD COLUMN source text NOT NULL DEFAULT 'hub' CHECK (source IN ('hub', 'subscriber'));
ALTER TABLE dead_letters ADD COLUMN queue text;
ALTER TABLE dead_letters ADD COLUMN attempts integer DEFAULT 1 CHECK (attempts >= 0);
ALTER TABLE dead_letters ADD COLUMN first_failed_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN last_failed_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN dedupe_key text;
CREATE UNIQUE INDEX dead_letters_dedupe_key ON dead_letters (dedupe_key);
