-- Users, their roles and API tokens (DESIGN.md §8; packages/hub/src/auth/).

-- A user: a name and its roles, as JSON: [{"role":"admin"} | {"role":"publisher","senders":[…]} |
-- {"role":"subscriber","selector":"<canonical selector>"}].
CREATE TABLE users (
  name text PRIMARY KEY,
  roles jsonb NOT NULL,
  -- the RabbitMQ user the hub created for it (HERALD_RABBITMQ_API), if any
  amqp_username text,
  created_at timestamptz NOT NULL
);

-- An API token: only the SHA-256 of its secret is kept. Revoking deletes the row; so does deleting
-- its user.
CREATE TABLE api_tokens (
  id uuid PRIMARY KEY,
  user_name text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
  name text NOT NULL,
  secret_sha256 bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL,
  last_used_at timestamptz,
  UNIQUE (user_name, name)
);

-- Who created a durable subscription: only that user (and admins) may use or delete it. A
-- subscription without a row (created while authentication was off, or whose user was deleted) is
-- for admins only.
CREATE TABLE subscription_owners (
  subscription text PRIMARY KEY,
  owner text NOT NULL REFERENCES users (name) ON DELETE CASCADE
);
