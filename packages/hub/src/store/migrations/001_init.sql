-- The log and the hub's state.
--
-- events: one row per event, "offset" dense from 1, assigned by the single writer (the lease) in
-- commit order. Event ids are unique over the whole log, so a redelivered or republished event is
-- stored once. The table is laid out for range partitioning by "offset" later (retention then drops
-- whole partitions): a partitioned table cannot carry a unique index on id alone, so when events is
-- partitioned, the id uniqueness moves to a narrow table event_ids(id primary key, "offset"), written
-- in the same transaction. Nothing outside the store sees the difference.
CREATE TABLE events (
  "offset" bigint PRIMARY KEY,
  id uuid NOT NULL UNIQUE,
  sender text NOT NULL,
  type text NOT NULL,
  time timestamptz NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT now(),
  content_type text NOT NULL,
  subject text,
  correlation_id text,
  causation_id text,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  data bytea NOT NULL
);

-- One index per selector shape, each ending in "offset" so "the last N of …" reads an index
-- backwards and stops after N rows: sender:type, *:type, sender:*, and time ranges.
CREATE INDEX events_sender_type_offset ON events (sender, type, "offset");
CREATE INDEX events_type_offset ON events (type, "offset");
CREATE INDEX events_sender_offset ON events (sender, "offset");
CREATE INDEX events_time ON events (time);

-- Messages that are not events, kept with the reason, byte for byte.
CREATE TABLE dead_letters (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL,
  reason text NOT NULL,
  code text NOT NULL,
  exchange text NOT NULL,
  routing_key text NOT NULL,
  message_id text,
  properties jsonb NOT NULL DEFAULT '{}'::jsonb,
  body bytea NOT NULL
);

-- Small named values: checkpoints and the like.
CREATE TABLE hub_state (
  key text PRIMARY KEY,
  value jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
