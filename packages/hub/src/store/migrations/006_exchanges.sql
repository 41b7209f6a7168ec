-- Exchanges made for clients that bind their own queues (seed 001: "create only an exchange";
-- packages/hub/src/exchanges/): a durable topic exchange bound to herald.events with a selector's
-- binding keys, declared again at every start of the hub.
CREATE TABLE exchanges (
  name text PRIMARY KEY,
  -- the canonical selector
  selector text NOT NULL,
  created_at timestamptz NOT NULL
);
