-- Dead letters one can act on (packages/hub/src/dead-letters/): when one was last re-sent, and how often.
ALTER TABLE dead_letters ADD COLUMN redriven_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN redrives integer NOT NULL DEFAULT 0;
