// The SQL of the service's own outbox and inbox tables. These tables live in the service's database,
// not in the hub's store, so their SQL ships with the SDK (docs/architecture.md says why).
import { ErrorCodes, ValidationError } from '@herald/core';
import type { Queryable } from './types.ts';

/** Where the outbox and inbox tables are. Every name is a lower-case SQL identifier. */
export interface OutboxTableOptions {
  /** The schema of both tables (created when missing). Default `public`. */
  schema?: string;
  /** The outbox table. Default `herald_outbox`. */
  outboxTable?: string;
  /** The inbox table. Default `herald_inbox`. */
  inboxTable?: string;
}

/** The table names, checked and quoted for SQL. */
export interface TableNames {
  readonly schema: string;
  /** `"schema"."herald_outbox"`, ready for SQL. */
  readonly outbox: string;
  readonly inbox: string;
  /** The outbox table's name without its schema, unquoted: prefixes its index names. */
  readonly outboxTable: string;
  /** `schema.table` of the outbox, unquoted: names its lease, its key locks and its NOTIFY channel. */
  readonly outboxName: string;
  /** The NOTIFY channel `add` signals on and the relay listens to. */
  readonly channel: string;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
/** PostgreSQL truncates identifiers, channel names included, to 63 bytes. */
const MAX_CHANNEL_BYTES = 63;

function identifier(o: Record<string, unknown>, field: string, fallback: string): string {
  const v = o[field] ?? fallback;
  if (typeof v !== 'string' || !IDENTIFIER.test(v)) {
    throw new ValidationError(
      ErrorCodes.INVALID_CONFIG,
      `invalid option ${field}: expected a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters) (got ${JSON.stringify(v)})`,
      { details: { field } },
    );
  }
  return v;
}

/** Checks and quotes the table options; throws a ValidationError (INVALID_CONFIG) naming the bad one. */
export function tableNames(options: OutboxTableOptions = {}): TableNames {
  const o = options as Record<string, unknown>;
  const schema = identifier(o, 'schema', 'public');
  const outbox = identifier(o, 'outboxTable', 'herald_outbox');
  const inbox = identifier(o, 'inboxTable', 'herald_inbox');
  const outboxName = `${schema}.${outbox}`;
  const channel = schema === 'public' ? outbox : outboxName;
  if (channel.length > MAX_CHANNEL_BYTES) {
    throw new ValidationError(
      ErrorCodes.INVALID_CONFIG,
      `invalid option outboxTable: schema and table name together (${channel}) exceed the ${MAX_CHANNEL_BYTES} characters of a NOTIFY channel`,
      { details: { field: 'outboxTable' } },
    );
  }
  return { schema, outboxTable: outbox, outbox: `"${schema}"."${outbox}"`, inbox: `"${schema}"."${inbox}"`, outboxName, channel };
}

/**
 * The outbox table: one row per event added in a service's transaction, until the relay has
 * published it (then marked `sent_at`, or deleted). `seq` orders the rows; `key` is the aggregate
 * whose events must stay in order; a row the relay gives up on gets `failed_at` and `last_error`
 * and is skipped from then on (clear both to send it again).
 */
export function outboxTableSql(names: TableNames): string {
  const t = names.outbox;
  const bare = names.outboxTable;
  return `CREATE TABLE IF NOT EXISTS ${t} (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id uuid NOT NULL UNIQUE,
  key text,
  sender text NOT NULL,
  type text NOT NULL,
  time_ms bigint NOT NULL,
  content_type text NOT NULL,
  data bytea NOT NULL,
  subject text,
  correlation_id text,
  causation_id text,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  failed_at timestamptz
);
CREATE INDEX IF NOT EXISTS ${bare}_pending ON ${t} (seq) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS ${bare}_sent ON ${t} (sent_at) WHERE sent_at IS NOT NULL;
`;
}

/** The inbox table: one row per (consumer, event id) handled, written in the handler's transaction. */
export function inboxTableSql(names: TableNames): string {
  return `CREATE TABLE IF NOT EXISTS ${names.inbox} (
  consumer text NOT NULL,
  event_id uuid NOT NULL,
  handled_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);
`;
}

const DEFAULT_NAMES = tableNames();

/** The outbox table with the default names (`public.herald_outbox`), for a migration tool of your own. */
export const OUTBOX_TABLE_SQL: string = outboxTableSql(DEFAULT_NAMES);
/** The inbox table with the default names (`public.herald_inbox`), for a migration tool of your own. */
export const INBOX_TABLE_SQL: string = inboxTableSql(DEFAULT_NAMES);

/**
 * The whole script for tables named by `options`: the schema, the outbox table and its indexes,
 * the inbox table. Idempotent (IF NOT EXISTS throughout), for a migration tool of your own.
 */
export function outboxSchemaSql(options: OutboxTableOptions = {}): string {
  const names = tableNames(options);
  return `CREATE SCHEMA IF NOT EXISTS "${names.schema}";\n${outboxTableSql(names)}${inboxTableSql(names)}`;
}

/** Serializes migrateOutbox across processes: any fixed number ("HGROBX"). */
const MIGRATE_LOCK = '79471160590936';

/**
 * Creates the outbox and inbox tables (and the schema) when missing. Idempotent, and safe when
 * several processes run it at once: the statements run as one transaction behind an advisory lock,
 * so one creates and the others find the tables made. `db` is a pg.Pool or a connected pg.Client
 * (not inside a transaction of its own). Rejects with the database's error when it cannot.
 */
export async function migrateOutbox(db: Queryable, options: OutboxTableOptions = {}): Promise<void> {
  // One simple-protocol query string runs as one implicit transaction; the lock is held to its end.
  await db.query(`SELECT pg_advisory_xact_lock(${MIGRATE_LOCK}::bigint);\n${outboxSchemaSql(options)}`);
}
