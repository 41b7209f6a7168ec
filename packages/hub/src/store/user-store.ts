import type { Role, TokenInfo, User } from '../auth/types.ts';
import { parseRoles } from '../auth/users.ts';
import type { SqlExecutor } from './driver.ts';
import { epochMs, optionalMs } from './sql-helpers.ts';

/** A token's row as authentication reads it: the token and its user in one statement. */
export interface TokenOwner {
  readonly token: TokenInfo;
  readonly user: User;
}

/**
 * The `users`, `api_tokens` and `subscription_owners` tables (migration 005). Every method is one
 * statement and rejects when the database fails. Secrets never pass through here: tokens are
 * looked up by the SHA-256 of their secret.
 */
export interface UserStore {
  /** Inserts a user; false when the name is taken. */
  insert(user: User): Promise<boolean>;
  get(name: string): Promise<User | undefined>;
  list(): Promise<User[]>;
  /** Replaces the roles; false when the user does not exist. */
  setRoles(name: string, roles: readonly Role[]): Promise<boolean>;
  setAmqpUsername(name: string, username: string | undefined): Promise<void>;
  /** Deletes the user with its tokens and subscription ownerships; false when absent. */
  delete(name: string): Promise<boolean>;
  /** Inserts a token; false when the user has one of that name, or does not exist. */
  insertToken(token: TokenInfo, secretSha256: Buffer): Promise<boolean>;
  tokens(user: string): Promise<TokenInfo[]>;
  /** Deletes a token of the user; false when it has none of that id. */
  deleteToken(user: string, id: string): Promise<boolean>;
  /** The token with this secret's hash and its user, or undefined. */
  byHash(secretSha256: Buffer): Promise<TokenOwner | undefined>;
  /** Those of the tokens that still exist, with their users. */
  byIds(ids: readonly string[]): Promise<TokenOwner[]>;
  /** Sets `last_used_at` of tokens to now. */
  touch(ids: readonly string[]): Promise<void>;
  /** The owner of a subscription, undefined when it has none. */
  ownerOf(subscription: string): Promise<string | undefined>;
  /** The subscriptions `owner` owns. */
  owned(owner: string): Promise<Set<string>>;
  /** Makes `owner` the owner of `subscription` unless it has one; resolves with the owner it has then. */
  claim(subscription: string, owner: string): Promise<string>;
  /** Makes `owner` the owner of `subscription`, whoever owned it before. */
  assign(subscription: string, owner: string): Promise<void>;
  /** Forgets a subscription's owner. */
  disown(subscription: string): Promise<void>;
}

interface UserRow {
  name: string;
  roles: unknown;
  amqp_username: string | null;
  created_ms: number;
}

interface TokenRow {
  id: string;
  user_name: string;
  name: string;
  created_ms: number;
  used_ms: number | null;
}

const USER_COLUMNS = `name, roles, amqp_username, ${epochMs('created_at')} AS created_ms`;
const TOKEN_COLUMNS = `id::text AS id, user_name, name, ${epochMs('created_at')} AS created_ms, ${epochMs('last_used_at')} AS used_ms`;

/** Roles as stored: selectors as their canonical text. */
function rolesJson(roles: readonly Role[]): string {
  return JSON.stringify(roles.map((r) => (r.role === 'subscriber' ? { role: r.role, selector: r.selector.canonical } : r)));
}

/** Stored roles, checked as strictly as the API checks them: an unknown role is an error, never an admin. */
function rolesOf(value: unknown): Role[] {
  return parseRoles(typeof value === 'string' ? JSON.parse(value) : value);
}

/**
 * A user row. Roles that cannot be read (a row written by hand, or by a newer version) count as
 * none: such a user authenticates but may do nothing, its RabbitMQ user may publish as no sender,
 * and an admin still sees it in the list, to fix its roles or delete it.
 */
function toUser(r: UserRow): User {
  let roles: Role[];
  try {
    roles = rolesOf(r.roles);
  } catch {
    roles = [];
  }
  return { name: r.name, roles, createdAt: Number(r.created_ms), amqpUsername: r.amqp_username ?? undefined };
}

function toToken(r: TokenRow): TokenInfo {
  return { id: r.id, user: r.user_name, name: r.name, createdAt: Number(r.created_ms), lastUsedAt: optionalMs(r.used_ms) };
}

type TokenOwnerRow = TokenRow & { u_roles: unknown; u_amqp: string | null; u_created_ms: number };

const TOKEN_OWNER_SELECT = `SELECT t.id::text AS id, t.user_name, t.name, ${epochMs('t.created_at')} AS created_ms,
         ${epochMs('t.last_used_at')} AS used_ms, u.roles AS u_roles, u.amqp_username AS u_amqp, ${epochMs('u.created_at')} AS u_created_ms
  FROM api_tokens t JOIN users u ON u.name = t.user_name`;

/** A token with its user. */
function toTokenOwner(row: TokenOwnerRow): TokenOwner {
  return {
    token: toToken(row),
    user: toUser({ name: row.user_name, roles: row.u_roles, amqp_username: row.u_amqp, created_ms: row.u_created_ms }),
  };
}

export function createUserStore(sql: SqlExecutor): UserStore {
  return {
    async insert(user) {
      const r = await sql.query(
        `INSERT INTO users (name, roles, amqp_username, created_at) VALUES ($1, $2::jsonb, $3, to_timestamp($4 / 1000.0))
         ON CONFLICT (name) DO NOTHING RETURNING name`,
        [user.name, rolesJson(user.roles), user.amqpUsername ?? null, user.createdAt],
      );
      return r.rows.length === 1;
    },
    async get(name) {
      const r = await sql.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE name = $1`, [name]);
      return r.rows[0] ? toUser(r.rows[0]) : undefined;
    },
    async list() {
      const r = await sql.query<UserRow>(`SELECT ${USER_COLUMNS} FROM users ORDER BY name`);
      return r.rows.map(toUser);
    },
    async setRoles(name, roles) {
      const r = await sql.query('UPDATE users SET roles = $2::jsonb WHERE name = $1 RETURNING name', [name, rolesJson(roles)]);
      return r.rows.length === 1;
    },
    async setAmqpUsername(name, username) {
      await sql.query('UPDATE users SET amqp_username = $2 WHERE name = $1', [name, username ?? null]);
    },
    async delete(name) {
      const r = await sql.query('DELETE FROM users WHERE name = $1 RETURNING name', [name]);
      return r.rows.length === 1;
    },
    async insertToken(token, secretSha256) {
      const r = await sql.query(
        `INSERT INTO api_tokens (id, user_name, name, secret_sha256, created_at)
         SELECT $1::uuid, $2, $3, $4, to_timestamp($5 / 1000.0) WHERE EXISTS (SELECT 1 FROM users WHERE name = $2)
         ON CONFLICT DO NOTHING RETURNING id`,
        [token.id, token.user, token.name, secretSha256, token.createdAt],
      );
      return r.rows.length === 1;
    },
    async tokens(user) {
      const r = await sql.query<TokenRow>(`SELECT ${TOKEN_COLUMNS} FROM api_tokens WHERE user_name = $1 ORDER BY created_at, id`, [user]);
      return r.rows.map(toToken);
    },
    async deleteToken(user, id) {
      const r = await sql.query('DELETE FROM api_tokens WHERE user_name = $1 AND id = $2::uuid RETURNING id', [user, id]);
      return r.rows.length === 1;
    },
    async byHash(secretSha256) {
      const r = await sql.query<TokenOwnerRow>(`${TOKEN_OWNER_SELECT} WHERE t.secret_sha256 = $1`, [secretSha256], 'herald_token_by_hash');
      return r.rows[0] && toTokenOwner(r.rows[0]);
    },
    async byIds(ids) {
      if (ids.length === 0) return [];
      const r = await sql.query<TokenOwnerRow>(`${TOKEN_OWNER_SELECT} WHERE t.id = ANY($1::uuid[])`, [ids]);
      return r.rows.map(toTokenOwner);
    },
    async touch(ids) {
      if (ids.length === 0) return;
      await sql.query('UPDATE api_tokens SET last_used_at = now() WHERE id = ANY($1::uuid[])', [ids]);
    },
    async ownerOf(subscription) {
      const r = await sql.query<{ owner: string }>('SELECT owner FROM subscription_owners WHERE subscription = $1', [subscription]);
      return r.rows[0]?.owner;
    },
    async owned(owner) {
      const r = await sql.query<{ subscription: string }>('SELECT subscription FROM subscription_owners WHERE owner = $1', [owner]);
      return new Set(r.rows.map((row) => row.subscription));
    },
    async claim(subscription, owner) {
      const r = await sql.query<{ owner: string }>(
        `WITH ins AS (INSERT INTO subscription_owners (subscription, owner) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING owner)
         SELECT owner FROM ins UNION ALL SELECT owner FROM subscription_owners WHERE subscription = $1 AND NOT EXISTS (SELECT 1 FROM ins)`,
        [subscription, owner],
      );
      return r.rows[0]?.owner ?? owner;
    },
    async assign(subscription, owner) {
      await sql.query(
        'INSERT INTO subscription_owners (subscription, owner) VALUES ($1, $2) ON CONFLICT (subscription) DO UPDATE SET owner = EXCLUDED.owner',
        [subscription, owner],
      );
    },
    async disown(subscription) {
      await sql.query('DELETE FROM subscription_owners WHERE subscription = $1', [subscription]);
    },
  };
}
