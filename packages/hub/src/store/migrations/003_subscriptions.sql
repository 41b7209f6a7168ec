-- Durable subscriptions (router mode): see packages/hub/src/subscriptions/.

-- A subscription: a name, a selector and the offset up to which its consumer acknowledged every
-- matching event. acked_offset only grows; it is written in batches, so after a crash a
-- subscription re-delivers what was acknowledged but not yet saved, and never skips.
CREATE TABLE subscriptions (
  name text PRIMARY KEY,
  -- canonical selector text, e.g. 'billing:*,shipping:parcel.sent'
  selector text NOT NULL,
  acked_offset bigint NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX subscriptions_selector ON subscriptions (selector);

-- The receivers: one RabbitMQ queue per canonical selector in use (herald.sub.<hash>), shared by
-- every subscription with that selector; removed with the last of them.
CREATE TABLE receivers (
  -- the selector's 16-hex-digit hash
  hash text PRIMARY KEY,
  selector text NOT NULL UNIQUE,
  queue text NOT NULL,
  created_at timestamptz NOT NULL
);
