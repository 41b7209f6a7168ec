import { isUuid, type Selector, sqlPredicate } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import type { DeadLetter } from './types.ts';

/** Where a dead letter comes from: `hub` (what ingest refused), `subscriber` (what a consumer sent to herald.dead). */
export type DeadLetterSource = 'hub' | 'subscriber';
export const DEAD_LETTER_SOURCES: readonly DeadLetterSource[] = Object.freeze(['hub', 'subscriber']);

/** A stored dead letter with its id, its source, its attempts and what redrives did to it. */
export interface StoredDeadLetter extends DeadLetter {
  readonly id: bigint;
  readonly source: DeadLetterSource;
  /** The queue it died on, when its subscriber said. */
  readonly queue: string | undefined;
  /** Handler attempts made (the hub's own: 1); undefined when its sender did not say. */
  readonly attempts: number | undefined;
  /** When the first and the last attempt failed, epoch ms (the hub's own: `at`). */
  readonly firstFailedAt: number;
  readonly lastFailedAt: number;
  /** When it was last re-sent, epoch ms; undefined when never. */
  readonly redrivenAt: number | undefined;
  readonly redrives: number;
}

/**
 * A dead letter taken from `herald.dead`, sanitized like the ingest's: source `subscriber`, or
 * `hub` for one the hub marked as its own it could not keep.
 */
export interface ReceivedDeadLetter extends DeadLetter {
  readonly source: DeadLetterSource;
  readonly queue: string | undefined;
  readonly attempts: number | undefined;
  readonly firstFailedAt: number;
  readonly lastFailedAt: number;
  /** Made from the message: a redelivery of the same message has the same key and is kept once. */
  readonly dedupeKey: string;
}

/** Which dead letters: those whose routing key `<sender>.<type>` the selector matches, of an error code, of a source. */
export interface DeadLetterFilter {
  readonly selector?: Selector | undefined;
  readonly code?: string | undefined;
  readonly source?: DeadLetterSource | undefined;
  /** Only ids up to this one (a bulk redrive's bound: what fails again comes back above it). */
  readonly upTo?: bigint | undefined;
}

/** The `dead_letters` table (migrations 001, 007, 008), beyond the ingest's inserts. */
export interface DeadLetterStore {
  /** Oldest first, after the id `after`, at most `limit`. */
  list(filter: DeadLetterFilter, after: bigint, limit: number): Promise<StoredDeadLetter[]>;
  get(id: bigint): Promise<StoredDeadLetter | undefined>;
  /** The highest id kept; 0 when none. */
  maxId(): Promise<bigint>;
  /**
   * Keeps dead letters taken from herald.dead, in one statement; one whose key is kept already is
   * skipped. Resolves with how many were new. Rejects as the store does (nothing is half-written).
   */
  addReceived(letters: readonly ReceivedDeadLetter[]): Promise<number>;
  /**
   * Deletes the oldest `subscriber` dead letters past the newest `keep`; how many. The hub's own
   * are not counted.
   */
  trimReceived(keep: number): Promise<number>;
  /** Which of these event ids (UUIDs; anything else is in no log) the log holds, lowercase. */
  eventsInLog(ids: readonly string[]): Promise<Set<string>>;
  /** Records a redrive of each. */
  redriven(ids: readonly bigint[]): Promise<void>;
  /** Deletes one; false when absent. */
  delete(id: bigint): Promise<boolean>;
  /** Deletes those the filter selects (every one without a filter); how many. */
  purge(filter: DeadLetterFilter): Promise<number>;
}

interface Row {
  id: string;
  at_ms: number;
  reason: string;
  code: string;
  exchange: string;
  routing_key: string;
  message_id: string | null;
  properties: Record<string, unknown> | string;
  body: Uint8Array;
  redriven_ms: number | null;
  redrives: number;
  source: string;
  queue: string | null;
  attempts: number | null;
  first_ms: number;
  last_ms: number;
}

const COLUMNS = `id::text AS id, (extract(epoch from at) * 1000)::float8 AS at_ms, reason, code, exchange, routing_key, message_id,
  properties, body, (extract(epoch from redriven_at) * 1000)::float8 AS redriven_ms, redrives, source, queue, attempts,
  (extract(epoch from coalesce(first_failed_at, at)) * 1000)::float8 AS first_ms,
  (extract(epoch from coalesce(last_failed_at, at)) * 1000)::float8 AS last_ms`;

/** A routing key read as `<sender>.<type>`: the sender up to the first dot, the type after it. */
const SENDER = "split_part(routing_key, '.', 1)";
const TYPE = "substr(routing_key, strpos(routing_key, '.') + 1)";

function where(filter: DeadLetterFilter, params: unknown[]): string {
  const conds: string[] = [];
  if (filter.selector) {
    const p = sqlPredicate(filter.selector, { firstParam: params.length + 1, senderColumn: SENDER, typeColumn: TYPE });
    // A routing key without a dot has no type: no selector matches it.
    conds.push(`(strpos(routing_key, '.') > 0 AND ${p.sql})`);
    params.push(...p.params);
  }
  if (filter.code !== undefined) {
    params.push(filter.code);
    conds.push(`code = $${params.length}`);
  }
  if (filter.source !== undefined) {
    params.push(filter.source);
    conds.push(`source = $${params.length}`);
  }
  if (filter.upTo !== undefined) {
    params.push(filter.upTo.toString());
    conds.push(`id <= $${params.length}`);
  }
  return conds.length === 0 ? 'TRUE' : conds.join(' AND ');
}

function toLetter(r: Row): StoredDeadLetter {
  return {
    id: BigInt(r.id),
    at: Math.round(Number(r.at_ms)),
    reason: r.reason,
    code: r.code,
    exchange: r.exchange,
    routingKey: r.routing_key,
    messageId: r.message_id ?? undefined,
    properties: typeof r.properties === 'string' ? (JSON.parse(r.properties) as Record<string, unknown>) : r.properties,
    body: Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength),
    redrivenAt: r.redriven_ms === null ? undefined : Math.round(Number(r.redriven_ms)),
    redrives: Number(r.redrives),
    source: r.source === 'subscriber' ? 'subscriber' : 'hub',
    queue: r.queue ?? undefined,
    attempts: r.attempts === null ? undefined : Number(r.attempts),
    firstFailedAt: Math.round(Number(r.first_ms)),
    lastFailedAt: Math.round(Number(r.last_ms)),
  };
}

/** Columns of one received dead letter, in INSERT order. */
const RECEIVED_COLUMNS =
  'at, reason, code, exchange, routing_key, message_id, properties, body, source, queue, attempts, first_failed_at, last_failed_at, dedupe_key';

function receivedValues(l: ReceivedDeadLetter, params: unknown[]): string {
  const b = params.length;
  params.push(
    l.at / 1000,
    l.reason,
    l.code,
    l.exchange,
    l.routingKey,
    l.messageId ?? null,
    JSON.stringify(l.properties),
    l.body,
    l.source,
    l.queue ?? null,
    l.attempts ?? null,
    l.firstFailedAt / 1000,
    l.lastFailedAt / 1000,
    l.dedupeKey,
  );
  const p = (i: number) => `$${b + i}`;
  return `(to_timestamp(${p(1)}::float8), ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, ${p(7)}::jsonb, ${p(8)}, ${p(9)}, ${p(10)}, ${p(11)}::integer, to_timestamp(${p(12)}::float8), to_timestamp(${p(13)}::float8), ${p(14)})`;
}

export function createDeadLetterStore(sql: SqlExecutor): DeadLetterStore {
  return {
    async list(filter, after, limit) {
      const params: unknown[] = [after.toString()];
      const cond = where(filter, params);
      params.push(limit);
      // By the column, not by the output's `id` (its text): as text, 10000 would sort before 9999.
      const r = await sql.query<Row>(
        `SELECT ${COLUMNS} FROM dead_letters WHERE id > $1::bigint AND ${cond} ORDER BY dead_letters.id LIMIT $${params.length}`,
        params,
      );
      return r.rows.map(toLetter);
    },
    async get(id) {
      const r = await sql.query<Row>(`SELECT ${COLUMNS} FROM dead_letters WHERE id = $1::bigint`, [id.toString()]);
      return r.rows[0] ? toLetter(r.rows[0]) : undefined;
    },
    async maxId() {
      const r = await sql.query<{ m: string | null }>('SELECT max(id)::text AS m FROM dead_letters', []);
      return BigInt(r.rows[0]?.m ?? '0');
    },
    async addReceived(letters) {
      if (letters.length === 0) return 0;
      const params: unknown[] = [];
      const values = letters.map((l) => receivedValues(l, params));
      // Two copies of one message in a single statement would conflict with each other: one goes.
      const r = await sql.query(
        `INSERT INTO dead_letters (${RECEIVED_COLUMNS}) VALUES ${values.join(', ')} ON CONFLICT (dedupe_key) DO NOTHING RETURNING id`,
        params,
      );
      return r.rows.length;
    },
    async trimReceived(keep) {
      // The id of the newest one past `keep`: it and every older one go (one index scan from the newest).
      const r = await sql.query<{ n: number }>(
        `WITH gone AS (
           DELETE FROM dead_letters WHERE source = 'subscriber' AND id <= (
             SELECT id FROM dead_letters WHERE source = 'subscriber' ORDER BY id DESC OFFSET $1 LIMIT 1
           ) RETURNING 1
         ) SELECT count(*)::int AS n FROM gone`,
        [keep],
      );
      return Number(r.rows[0]?.n ?? 0);
    },
    async eventsInLog(ids) {
      const uuids = ids.filter(isUuid).map((id) => id.toLowerCase());
      if (uuids.length === 0) return new Set();
      const r = await sql.query<{ id: string }>('SELECT id::text AS id FROM events WHERE id = ANY($1::uuid[])', [uuids]);
      return new Set(r.rows.map((row) => row.id));
    },
    async redriven(ids) {
      if (ids.length === 0) return;
      await sql.query('UPDATE dead_letters SET redriven_at = now(), redrives = redrives + 1 WHERE id = ANY($1::bigint[])', [
        ids.map(String),
      ]);
    },
    async delete(id) {
      const r = await sql.query('DELETE FROM dead_letters WHERE id = $1::bigint RETURNING id', [id.toString()]);
      return r.rows.length === 1;
    },
    async purge(filter) {
      const params: unknown[] = [];
      const r = await sql.query(`DELETE FROM dead_letters WHERE ${where(filter, params)} RETURNING id`, params);
      return r.rows.length;
    },
  };
}
