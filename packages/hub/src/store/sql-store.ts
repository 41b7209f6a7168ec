import { ErrorCodes, HeraldError, type HeraldEvent, joinTraceHeaders, splitTraceHeaders } from '@herald/core';
import type { Driver, ReadExecutor, SqlExecutor } from './driver.ts';
import { createExchangeStore } from './exchange-store.ts';
import { createHeldStore } from './held-store.ts';
import { migrate } from './migrate.ts';
import { createPauseStore } from './pause-store.ts';
import { createReplayStore } from './replay-store.ts';
import { matchingOffsetsSql } from './selector-sql.ts';
import { createSubscriptionStore } from './subscription-store.ts';
import type { AppendResult, DeadLetter, EventQuery, Repositories, Store, StoredEvent } from './types.ts';
import { createUserStore } from './user-store.ts';

/** PostgreSQL caps a statement at 65,535 parameters; 11 per event leaves room for 5,000 rows. */
const ROWS_PER_INSERT = 4000;
/**
 * INSERTs of every row count up to this, and of powers of two above it, are prepared statements
 * (one per row count and connection, at most 38): parsing and planning an INSERT anew costs
 * PostgreSQL a quarter to a third of a one-row insert's CPU and 40-50 % of a 256-row one's
 * (bench/hub/prepared-bench.ts). The ingest cuts its batches to these counts (appendBatchSize).
 */
const PREPARED_ROWS = 32;

/** True when the INSERT of `n` rows is a prepared statement. */
function isPreparedCount(n: number): boolean {
  return n <= PREPARED_ROWS || (n <= ROWS_PER_INSERT && (n & (n - 1)) === 0);
}
const EVENT_COLUMNS = `"offset"::text AS "offset", id::text AS id, sender, type,
  (extract(epoch from time) * 1000)::float8 AS time_ms, (extract(epoch from stored_at) * 1000)::float8 AS stored_ms,
  content_type, subject, correlation_id, causation_id, headers, data`;

interface EventRow {
  offset: string;
  id: string;
  sender: string;
  type: string;
  time_ms: number;
  stored_ms: number;
  content_type: string;
  subject: string | null;
  correlation_id: string | null;
  causation_id: string | null;
  headers: Record<string, string> | string;
  data: Uint8Array;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The log keeps an event's trace context among its headers, as AMQP carries it (joinTraceHeaders). */
function rowToEvent(r: EventRow): StoredEvent {
  const { headers, traceparent, tracestate } = splitTraceHeaders(typeof r.headers === 'string' ? JSON.parse(r.headers) : r.headers);
  return {
    offset: BigInt(r.offset),
    id: r.id,
    sender: r.sender,
    type: r.type,
    time: Math.round(Number(r.time_ms)),
    storedAt: Math.round(Number(r.stored_ms)),
    data: toBuffer(r.data),
    contentType: r.content_type,
    subject: r.subject ?? undefined,
    correlationId: r.correlation_id ?? undefined,
    causationId: r.causation_id ?? undefined,
    headers,
    traceparent,
    tracestate,
  };
}

/** The lease on writing: how each driver holds it. */
export interface WriterLease {
  /** Resolves true when this process now holds the lease. */
  acquire(): Promise<boolean>;
  /** True while held. */
  readonly held: boolean;
  release(): Promise<void>;
}

/** Every repository over one connection: a repository added to Repositories must be added here, and SqlStore has it. */
export function createRepositories(sql: SqlExecutor): Repositories {
  return {
    pauses: createPauseStore(sql),
    held: createHeldStore(sql),
    replays: createReplayStore(sql),
    subscriptions: createSubscriptionStore(sql),
    exchanges: createExchangeStore(sql),
    users: createUserStore(sql),
  };
}

/** A base class whose instances carry the repositories of createRepositories as their own fields. */
const WithRepositories = class {
  constructor(sql: SqlExecutor) {
    Object.assign(this, createRepositories(sql));
  }
} as new (
  sql: SqlExecutor,
) => Repositories;

/**
 * How the log grows without an API change (001_init.sql says why id uniqueness stays whole-log):
 * - Partitioning by "offset" range: every statement here names "offset" bounds or reads per-pattern
 *   indexes ordered by "offset", which partition pruning and MergeAppend keep cheap; id uniqueness
 *   moves to a narrow event_ids(id PRIMARY KEY, "offset") written in the same transaction.
 * - Retention trims the old end (DROP a partition, or DELETE WHERE "offset" <= n). Offsets are never
 *   renumbered, so readers keep their positions; a query from before the trimmed range starts at
 *   the first kept event. Two rules for whoever adds it: keep the ids of trimmed events in event_ids
 *   (or a dedupe horizon) so a late retry is still a duplicate, and never trim the newest event, or
 *   keep the head in hub_state, because the head is read as MAX("offset").
 *
 * The Store over any Driver: the same SQL for PostgreSQL and PGlite. The head offset is kept in
 * memory while the lease is held and re-read after any failed append, so offsets stay dense.
 */
export class SqlStore extends WithRepositories implements Store {
  readonly kind: 'postgres' | 'embedded';
  readonly sql: SqlExecutor;
  /**
   * Reads of the log (query, getByOffset, getById, and the hub's own log queries such as a
   * subscription's lag): on PostgreSQL the read pool, apart from the writer's, whose statements
   * are cancelled after the query timeout (TIMEOUT) and whose connection failures are UNAVAILABLE;
   * on the embedded store the one connection (`sql`).
   */
  readonly reads: SqlExecutor;
  private head: bigint | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    kind: 'postgres' | 'embedded',
    private readonly db: Driver,
    private readonly lease: WriterLease,
    private readonly onClose: () => Promise<void> = async () => {},
    private readonly readPool: ReadExecutor | undefined = undefined,
  ) {
    // The repositories (Store.pauses, .subscriptions, …): the fields of WithRepositories.
    super(db);
    this.kind = kind;
    this.sql = db;
    this.reads = readPool ?? db;
  }

  async migrate(): Promise<void> {
    await migrate(this.db);
  }

  async acquireWriterLease(): Promise<boolean> {
    this.head = undefined;
    const ok = await this.lease.acquire();
    // Read the head once per lease; if this read fails, the first append reads it instead.
    if (ok) this.head = await this.headOffset().catch(() => undefined);
    return ok;
  }

  appendBatchSize(n: number): number {
    if (this.kind === 'embedded' || n <= PREPARED_ROWS) return n;
    let size = PREPARED_ROWS;
    while (size * 2 <= n && size * 2 <= ROWS_PER_INSERT) size *= 2;
    return size;
  }

  async append(events: readonly HeraldEvent[]): Promise<AppendResult> {
    if (!this.lease.held) {
      throw new HeraldError(ErrorCodes.CONFLICT, 'cannot append: this process does not hold the writer lease');
    }
    if (events.length === 0) return { stored: [], duplicates: [] };
    const fast = await this.appendFresh(events);
    if (fast) return fast;
    try {
      return await this.db.transaction(async (tx) => {
        let head = this.head;
        if (head === undefined) {
          const { rows } = await tx.query<{ head: string }>('SELECT COALESCE(MAX("offset"), 0)::text AS head FROM events');
          head = BigInt(rows[0]?.head ?? '0');
        }
        const ids = events.map((e) => e.id);
        const { rows: existing } = await tx.query<{ id: string }>('SELECT id::text AS id FROM events WHERE id = ANY($1::uuid[])', [ids]);
        const seen = new Set(existing.map((r) => r.id.toLowerCase()));
        const stored: StoredEvent[] = [];
        const duplicates: string[] = [];
        const storedAt = Date.now();
        for (const e of events) {
          const key = e.id.toLowerCase();
          if (seen.has(key)) {
            duplicates.push(e.id);
            continue;
          }
          seen.add(key);
          head += 1n;
          stored.push({ ...e, offset: head, storedAt });
        }
        for (let i = 0; i < stored.length; i += ROWS_PER_INSERT) {
          await insertEvents(tx, stored.slice(i, i + ROWS_PER_INSERT), storedAt);
        }
        this.head = head;
        return { stored, duplicates };
      });
    } catch (err) {
      this.head = undefined;
      throw err;
    }
  }

  /**
   * The common case in one statement (one round trip, one commit): the head is known, the batch
   * fits one INSERT and none of its ids is in the log. The INSERT has no ON CONFLICT, so an id that
   * is there already fails the whole statement (nothing stored, offsets stay dense); undefined then
   * sends the batch down the careful path, which looks the ids up first.
   */
  private async appendFresh(events: readonly HeraldEvent[]): Promise<AppendResult | undefined> {
    const before = this.head;
    if (before === undefined || events.length > ROWS_PER_INSERT) return undefined;
    let head = before;
    const ids = new Set<string>();
    for (const e of events) {
      const key = e.id.toLowerCase();
      if (ids.has(key)) return undefined;
      ids.add(key);
    }
    const storedAt = Date.now();
    const stored: StoredEvent[] = events.map((e) => ({ ...e, offset: ++head, storedAt }));
    try {
      await insertEvents(this.db, stored, storedAt);
    } catch (err) {
      this.head = undefined;
      if ((err as { code?: unknown }).code === UNIQUE_VIOLATION) return undefined;
      throw err;
    }
    this.head = head;
    return { stored, duplicates: [] };
  }

  async query(q: EventQuery): Promise<StoredEvent[]> {
    const built = eventQuerySql(q);
    if (built === undefined) return [];
    const { rows } = await this.reads.query<EventRow>(built.sql, built.params);
    return rows.map(rowToEvent);
  }

  async getByOffset(offset: bigint): Promise<StoredEvent | undefined> {
    const { rows } = await this.reads.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM events WHERE "offset" = $1::bigint`, [
      offset.toString(),
    ]);
    return rows[0] === undefined ? undefined : rowToEvent(rows[0]);
  }

  async getById(id: string): Promise<StoredEvent | undefined> {
    const { rows } = await this.reads.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM events WHERE id = $1::uuid`, [id]);
    return rows[0] === undefined ? undefined : rowToEvent(rows[0]);
  }

  /**
   * On the writer's pool, not the read pool: the dispatcher and the lease need the head to keep
   * the flow going however busy the readers are, and MAX("offset") is one index probe, so it cannot
   * be the slow query a statement timeout is for.
   */
  async headOffset(): Promise<bigint> {
    const { rows } = await this.db.query<{ head: string }>('SELECT COALESCE(MAX("offset"), 0)::text AS head FROM events');
    return BigInt(rows[0]?.head ?? '0');
  }

  async addDeadLetters(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const params: unknown[] = [];
    const values = letters.map((l) => {
      const base = params.length;
      params.push(l.at / 1000, l.reason, l.code, l.exchange, l.routingKey, l.messageId ?? null, JSON.stringify(l.properties), l.body);
      return `(to_timestamp($${base + 1}::float8), $${base + 2}, $${base + 3}, $${base + 4}, $${base + 5}, $${base + 6}, $${base + 7}::jsonb, $${base + 8})`;
    });
    await this.db.query(
      `INSERT INTO dead_letters (at, reason, code, exchange, routing_key, message_id, properties, body) VALUES ${values.join(', ')}`,
      params,
    );
  }

  async listDeadLetters(limit: number): Promise<(DeadLetter & { id: bigint })[]> {
    const { rows } = await this.db.query<{
      id: string;
      at_ms: number;
      reason: string;
      code: string;
      exchange: string;
      routing_key: string;
      message_id: string | null;
      properties: Record<string, unknown> | string;
      body: Uint8Array;
    }>(
      `SELECT id::text AS id, (extract(epoch from at) * 1000)::float8 AS at_ms, reason, code, exchange, routing_key, message_id, properties, body
       FROM dead_letters ORDER BY dead_letters.id DESC LIMIT $1`,
      [limit],
    );
    return rows.map((r) => ({
      id: BigInt(r.id),
      at: Math.round(Number(r.at_ms)),
      reason: r.reason,
      code: r.code,
      exchange: r.exchange,
      routingKey: r.routing_key,
      messageId: r.message_id ?? undefined,
      properties: typeof r.properties === 'string' ? JSON.parse(r.properties) : r.properties,
      body: toBuffer(r.body),
    }));
  }

  async getState<T>(key: string): Promise<T | undefined> {
    // Read as text and parse here: drivers differ in whether they parse jsonb, and a stored JSON
    // string must not be parsed twice.
    const { rows } = await this.db.query<{ value: string }>('SELECT value::text AS value FROM hub_state WHERE key = $1', [key]);
    if (rows[0] === undefined) return undefined;
    return JSON.parse(rows[0].value) as T;
  }

  async setState(key: string, value: unknown): Promise<void> {
    await this.db.query(
      `INSERT INTO hub_state (key, value, updated_at) VALUES ($1, $2::jsonb, now())
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
      [key, JSON.stringify(value)],
    );
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  /**
   * Releases the writer lease, closes the connections and (embedded) unlocks the directory, even
   * when closing the database fails. A second call waits for the first.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.lease.release().catch(() => {});
        await this.readPool?.close().catch(() => {});
        await this.db.close();
      } finally {
        await this.onClose();
      }
    })();
    return this.closing;
  }
}

/**
 * The SQL of a log query, undefined when it can return nothing (limit 0): the matching offsets one
 * branch per selector pattern (matchingOffsetsSql says why), then their events. Exported for the
 * benchmark's EXPLAIN.
 */
export function eventQuerySql(q: EventQuery): { sql: string; params: unknown[] } | undefined {
  const limit = Math.max(0, Math.trunc(q.last !== undefined ? Math.min(q.last, q.limit) : q.limit));
  if (!(limit > 0)) return undefined;
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const bounds: string[] = [];
  if (q.after !== undefined) bounds.push(`"offset" > ${p(q.after.toString())}::bigint`);
  if (q.upTo !== undefined) bounds.push(`"offset" <= ${p(q.upTo.toString())}::bigint`);
  if (q.since !== undefined) bounds.push(`time >= to_timestamp(${p(q.since / 1000)}::float8)`);
  if (q.until !== undefined) bounds.push(`time < to_timestamp(${p(q.until / 1000)}::float8)`);
  const dir = q.last !== undefined ? 'DESC' : 'ASC';
  const offsets = matchingOffsetsSql(params, q.selector, { bounds, order: dir, limit });
  if (q.maxBytes === undefined) {
    return {
      sql: `SELECT ${EVENT_COLUMNS} FROM events WHERE "offset" IN (${offsets}) ORDER BY events."offset" ASC`,
      params,
    };
  }
  // The same rows with a running sum of the bodies before each one, in the query's order; rows
  // whose predecessors reached the bound are dropped before anything is sent. octet_length of a
  // bytea reads the length from the value's header, and a row dropped here is never sent, so a
  // body that is not returned is not read from TOAST either.
  const maxBytes = p(Math.max(1, Math.trunc(q.maxBytes)));
  return {
    sql: `SELECT ${BOUNDED_COLUMNS} FROM (
  SELECT ${EVENT_COLUMNS}, events."offset" AS pos,
    COALESCE(sum(octet_length(data)) OVER (ORDER BY events."offset" ${dir} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS bytes_before
  FROM events WHERE "offset" IN (${offsets})
) e WHERE bytes_before < ${maxBytes}::bigint ORDER BY pos ASC`,
    params,
  };
}

/** The columns of EVENT_COLUMNS by name, for the outer SELECT of a query bounded in bytes. */
const BOUNDED_COLUMNS = `"offset", id, sender, type, time_ms, stored_ms, content_type, subject, correlation_id, causation_id, headers, data`;

/**
 * True when the log may hold more events past `rows`, the result of `q`: it came back full
 * (`limit` events), or its bodies reached `q.maxBytes`. A result cut by bytes that happened to end
 * at the last match also says true; the next read then comes back empty.
 */
export function queryMayHaveMore(q: Pick<EventQuery, 'limit' | 'last' | 'maxBytes'>, rows: readonly { data: Uint8Array }[]): boolean {
  const limit = q.last !== undefined ? Math.min(q.last, q.limit) : q.limit;
  if (rows.length >= limit) return true;
  if (q.maxBytes === undefined || rows.length === 0) return false;
  let bytes = 0;
  for (const e of rows) bytes += e.data.length;
  return bytes >= q.maxBytes;
}

/** SQLSTATE unique_violation: an id (or, with a stale head, an offset) already in the log. */
const UNIQUE_VIOLATION = '23505';

const insertSqlCache: string[] = [];

/**
 * The INSERT of `n` events: parameter $1 is the stored-at time, then 11 per event. The same text
 * for the same `n`, which a prepared statement's name relies on.
 */
export function insertEventsSql(n: number): string {
  const cached = insertSqlCache[n];
  if (cached !== undefined) return cached;
  const values: string[] = [];
  for (let i = 0; i < n; i++) {
    const b = 1 + i * 11;
    values.push(
      `($${b + 1}::bigint, $${b + 2}::uuid, $${b + 3}, $${b + 4}, to_timestamp($${b + 5}::float8), to_timestamp($1::float8), $${b + 6}, $${b + 7}, $${b + 8}, $${b + 9}, $${b + 10}::jsonb, $${b + 11}::bytea)`,
    );
  }
  const sql = `INSERT INTO events ("offset", id, sender, type, time, stored_at, content_type, subject, correlation_id, causation_id, headers, data) VALUES ${values.join(', ')}`;
  if (isPreparedCount(n)) insertSqlCache[n] = sql;
  return sql;
}

async function insertEvents(tx: SqlExecutor, rows: StoredEvent[], storedAt: number): Promise<void> {
  const params: unknown[] = [storedAt / 1000];
  for (const e of rows) {
    params.push(
      e.offset.toString(),
      e.id,
      e.sender,
      e.type,
      e.time / 1000,
      e.contentType,
      e.subject ?? null,
      e.correlationId ?? null,
      e.causationId ?? null,
      JSON.stringify(joinTraceHeaders(e)),
      e.data,
    );
  }
  const n = rows.length;
  await tx.query(insertEventsSql(n), params, isPreparedCount(n) ? `herald_insert_events_${n}` : undefined);
}
