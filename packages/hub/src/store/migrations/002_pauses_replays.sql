-- Pauses, held events and replays (router mode): see packages/hub/src/dispatcher/.

-- A pause holds the flow of its selector until it ends (resumed or expired); it stays here until
-- everything it held was released, so a restarted hub knows what still holds.
CREATE TABLE pauses (
  id uuid PRIMARY KEY,
  -- canonical selector text, e.g. 'billing:*,shipping:parcel.sent'
  selector text NOT NULL,
  reason text,
  -- set for the hub's own pause that holds the flow while a replay into it runs
  replay_id uuid,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  ended_at timestamptz,
  released_at timestamptz
);
CREATE INDEX pauses_holding ON pauses (created_at) WHERE released_at IS NULL;
CREATE INDEX pauses_replay ON pauses (replay_id) WHERE replay_id IS NOT NULL;

-- Offsets the dispatcher held back. Sender and type are copied so that "what does this pause
-- cover" and "what may be released" are answered without reading the log.
CREATE TABLE held_events (
  "offset" bigint PRIMARY KEY,
  sender text NOT NULL,
  type text NOT NULL
);

CREATE TABLE replays (
  id uuid PRIMARY KEY,
  selector text NOT NULL,
  target text NOT NULL,
  from_spec jsonb NOT NULL,
  to_spec jsonb,
  -- the range resolved at creation: offsets in (after_offset, up_to], event time in [since, until)
  after_offset bigint NOT NULL,
  up_to bigint NOT NULL,
  since timestamptz,
  until timestamptz,
  status text NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
  -- the highest offset sent so far: where a restarted hub continues
  position bigint NOT NULL,
  count bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  started_at timestamptz,
  finished_at timestamptz,
  error text
);
CREATE INDEX replays_unfinished ON replays (created_at) WHERE status IN ('pending', 'running');
