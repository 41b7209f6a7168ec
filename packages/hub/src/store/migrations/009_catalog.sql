-- The event catalog (packages/hub/src/catalog/): per event type, i.e. per (sender, type), a JSON
-- Schema in numbered versions, a description, an example payload and whether the hub validates
-- events of the type at ingest; and what was seen of it: its producers (the sender, with the
-- publishing RabbitMQ user when the message carried one) and its consumers (durable subscriptions
-- and exchanges whose selectors match it), each with when first and last seen.
CREATE TABLE catalog_entries (
  sender text NOT NULL,
  type text NOT NULL,
  description text,
  -- JSON text, kept as written (jsonb would reorder the keys)
  example text,
  validate boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sender, type)
);

CREATE TABLE catalog_schemas (
  sender text NOT NULL,
  type text NOT NULL,
  version integer NOT NULL CHECK (version >= 1),
  -- JSON text, kept as written
  schema text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sender, type, version),
  FOREIGN KEY (sender, type) REFERENCES catalog_entries (sender, type) ON DELETE CASCADE
);

-- Observed traffic: not tied to an entry, since a type is in the catalog as soon as it is seen.
CREATE TABLE catalog_producers (
  sender text NOT NULL,
  type text NOT NULL,
  -- the publishing RabbitMQ user, '' when the messages carried none
  user_id text NOT NULL,
  events bigint NOT NULL DEFAULT 0,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  PRIMARY KEY (sender, type, user_id)
);

CREATE TABLE catalog_consumers (
  sender text NOT NULL,
  type text NOT NULL,
  -- 'subscription' or 'exchange'
  kind text NOT NULL,
  name text NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  PRIMARY KEY (sender, type, kind, name)
);
