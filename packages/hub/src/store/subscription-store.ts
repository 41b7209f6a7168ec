import { parseSelector, type Selector, sqlPredicate } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import { matchingOffsetsSql } from './selector-sql.ts';
import { epochMs, optionalMs, toBigInt, tsParam } from './sql-helpers.ts';

/** A subscription as kept in the `subscriptions` table (migration 003). */
export interface SubscriptionRecord {
  readonly name: string;
  readonly selector: Selector;
  readonly ackedOffset: bigint;
  readonly createdAt: number;
}

/** A receiver as kept in the `receivers` table. */
export interface ReceiverRecord {
  readonly hash: string;
  readonly selector: Selector;
  readonly queue: string;
}

/** The receiver queue of a selector: `herald.sub.<hash>`. */
export function receiverQueue(selector: Selector): string {
  return `herald.sub.${selector.hash}`;
}

/** Lag figures are counted up to here, then capped. */
export const LAG_CAP = 1_000_000;

/**
 * The `subscriptions` and `receivers` tables (migration 003) and the few log queries the manager
 * needs beyond Store.query (offsets only, counts), each selector query one branch per pattern
 * (matchingOffsetsSql). Every method is one statement and rejects when the database fails.
 */
export interface SubscriptionStore {
  loadAll(): Promise<{ subscriptions: SubscriptionRecord[]; receivers: ReceiverRecord[] }>;
  /**
   * Inserts the subscription, and its receiver unless the selector has one; one statement. Resolves
   * with the subscription as stored: the existing one when the name was taken (compare selectors).
   */
  insert(sub: SubscriptionRecord): Promise<SubscriptionRecord>;
  /** Removes the subscription and, when no other subscription has its selector, its receiver. False when absent. */
  delete(name: string, selector: Selector): Promise<boolean>;
  /** Ensures a receiver row (start() repairs one missing). */
  ensureReceiver(selector: Selector): Promise<void>;
  deleteReceiver(hash: string): Promise<void>;
  /** One UPDATE for many subscriptions; an offset never goes down. */
  saveAcked(entries: readonly { name: string; acked: bigint }[]): Promise<void>;
  /** Offsets of matching events in (after, upTo], ascending, at most `limit`. */
  offsets(selector: Selector, after: bigint, upTo: bigint | undefined, limit: number): Promise<bigint[]>;
  /** The smallest held offset (held_events, migration 002) matching the selector. */
  firstHeld(selector: Selector): Promise<bigint | undefined>;
  /** The offset of the N-th last event matching the selector; undefined when fewer match. */
  nthLast(selector: Selector, n: number): Promise<bigint | undefined>;
  /** How many events in (after, upTo], event time in [since, until), match both selectors. */
  countRange(
    a: Selector,
    b: Selector,
    range: { after: bigint; upTo: bigint; since?: number | undefined; until?: number | undefined },
  ): Promise<number>;
  /** Matching events above `after` (capped at LAG_CAP) and the storage time of the first one. */
  lag(selector: Selector, after: bigint): Promise<Lag>;
  /**
   * lag() of each entry, in the entries' order, with the same answers: the entries of a selector
   * share one VALUES list of offsets joined LATERAL to its query, entries of the same selector and
   * offset are counted once, and one statement reads up to LAG_MANY_MAX_SELECTORS selectors.
   */
  lagMany(entries: readonly { selector: Selector; after: bigint }[]): Promise<Lag[]>;
}

/** How far a subscription is behind: matching events above its offset (capped at LAG_CAP), and the first one's storage time. */
export interface Lag {
  readonly events: number;
  readonly oldestMs: number | undefined;
}

/**
 * Selectors read by one lagMany statement. Each adds a branch per pattern, and planning grows faster
 * than the statement (1,000 selectors: 20 a statement listed in half the time 100 took).
 */
export const LAG_MANY_MAX_SELECTORS = 20;

interface SubRow {
  name: string;
  selector: string;
  acked: string;
  created_ms: number;
}

function toRecord(r: SubRow): SubscriptionRecord {
  return { name: r.name, selector: parseSelector(r.selector), ackedOffset: toBigInt(r.acked), createdAt: Number(r.created_ms) };
}

const SUB_COLUMNS = `name, selector, acked_offset::text AS acked, ${epochMs('created_at')} AS created_ms`;

/** The SubscriptionStore over an SQL executor. */
export function createSubscriptionStore(sql: SqlExecutor): SubscriptionStore {
  return {
    async loadAll() {
      const subs = await sql.query<SubRow>(`SELECT ${SUB_COLUMNS} FROM subscriptions ORDER BY name`, []);
      const recs = await sql.query<{ hash: string; selector: string; queue: string }>(
        'SELECT hash, selector, queue FROM receivers ORDER BY hash',
        [],
      );
      return {
        subscriptions: subs.rows.map(toRecord),
        receivers: recs.rows.map((r) => ({ hash: r.hash, selector: parseSelector(r.selector), queue: r.queue })),
      };
    },
    async insert(sub) {
      const { rows } = await sql.query<SubRow>(
        `WITH r AS (
           INSERT INTO receivers (hash, selector, queue, created_at) VALUES ($5, $2, $6, now()) ON CONFLICT DO NOTHING
         ), s AS (
           INSERT INTO subscriptions (name, selector, acked_offset, created_at, updated_at)
           VALUES ($1, $2, $3::bigint, to_timestamp($4::float8 / 1000), now())
           ON CONFLICT (name) DO NOTHING
           RETURNING ${SUB_COLUMNS}
         )
         SELECT * FROM s UNION ALL SELECT ${SUB_COLUMNS} FROM subscriptions WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM s)`,
        [sub.name, sub.selector.canonical, sub.ackedOffset.toString(), sub.createdAt, sub.selector.hash, receiverQueue(sub.selector)],
      );
      return toRecord(rows[0] as SubRow);
    },
    async delete(name, selector) {
      // The CTE's DELETE is not visible to the outer statement: the other users are those not named $1.
      const { rows } = await sql.query<{ name: string }>(
        `WITH d AS (DELETE FROM subscriptions WHERE name = $1 RETURNING name),
              r AS (DELETE FROM receivers WHERE hash = $2 AND EXISTS (SELECT 1 FROM d)
                      AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.selector = $3 AND s.name <> $1))
         SELECT name FROM d`,
        [name, selector.hash, selector.canonical],
      );
      return rows.length > 0;
    },
    async ensureReceiver(selector) {
      await sql.query('INSERT INTO receivers (hash, selector, queue, created_at) VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING', [
        selector.hash,
        selector.canonical,
        receiverQueue(selector),
      ]);
    },
    async deleteReceiver(hash) {
      await sql.query('DELETE FROM receivers WHERE hash = $1', [hash]);
    },
    async saveAcked(entries) {
      if (entries.length === 0) return;
      await sql.query(
        `UPDATE subscriptions s SET acked_offset = v.acked, updated_at = now()
           FROM unnest($1::text[], $2::bigint[]) AS v(name, acked)
          WHERE s.name = v.name AND s.acked_offset < v.acked`,
        [entries.map((e) => e.name), entries.map((e) => e.acked.toString())],
      );
    },
    async offsets(selector, after, upTo, limit) {
      const params: unknown[] = [after.toString()];
      const bounds = ['"offset" > $1::bigint'];
      if (upTo !== undefined) bounds.push(`"offset" <= $${params.push(upTo.toString())}::bigint`);
      const limitParam = `$${params.push(limit)}::bigint`;
      const offsets = matchingOffsetsSql(params, selector, { bounds, limit: limitParam });
      const { rows } = await sql.query<{ off: string }>(`SELECT "offset"::text AS off FROM (${offsets}) o ORDER BY o."offset"`, params);
      return rows.map((r) => toBigInt(r.off));
    },
    async firstHeld(selector) {
      // held_events has no index per pattern, and what is held is read whole either way: one OR.
      const pred = sqlPredicate(selector);
      const { rows } = await sql.query<{ off: string | null }>(
        `SELECT min("offset")::text AS off FROM held_events WHERE ${pred.sql}`,
        pred.params,
      );
      const off = rows[0]?.off;
      return off === null || off === undefined ? undefined : toBigInt(off);
    },
    async nthLast(selector, n) {
      // The n last of each pattern, merged: the n-th last of them all is the last of those n.
      const params: unknown[] = [n];
      const offsets = matchingOffsetsSql(params, selector, { order: 'DESC', limit: '$1::bigint' });
      const { rows } = await sql.query<{ off: string }>(
        `SELECT "offset"::text AS off FROM (${offsets}) o ORDER BY o."offset" DESC LIMIT 1 OFFSET $1::bigint - 1`,
        params,
      );
      return rows[0] === undefined ? undefined : toBigInt(rows[0].off);
    },
    async countRange(a, b, range) {
      const params: unknown[] = [range.after.toString(), range.upTo.toString()];
      const bounds = ['"offset" > $1::bigint', '"offset" <= $2::bigint'];
      if (range.since !== undefined) bounds.push(`time >= ${tsParam(params.push(range.since))}`);
      if (range.until !== undefined) bounds.push(`time < ${tsParam(params.push(range.until))}`);
      const offsets = matchingOffsetsSql(params, a, { bounds, also: b });
      const { rows } = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${offsets}) c`, params);
      return Number(rows[0]?.n ?? 0);
    },
    async lag(selector, after) {
      const params: unknown[] = [after.toString(), LAG_CAP];
      const offsets = matchingOffsetsSql(params, selector, { bounds: ['"offset" > $1::bigint'], limit: '$2::bigint' });
      const { rows } = await sql.query<{ n: number; oldest_ms: number | null }>(
        `WITH m AS (${offsets})
         SELECT (SELECT count(*)::int FROM m) AS n,
                (SELECT ${epochMs('stored_at')} FROM events WHERE "offset" = (SELECT min("offset") FROM m)) AS oldest_ms`,
        params,
      );
      const r = rows[0];
      return { events: Number(r?.n ?? 0), oldestMs: optionalMs(r?.oldest_ms) };
    },
    async lagMany(entries) {
      // Each distinct (selector, offset) once, as a key; entries point at their key.
      const groups = new Map<string, { selector: Selector; keys: Map<bigint, number> }>();
      const keyOf: number[] = [];
      let keys = 0;
      for (const e of entries) {
        let g = groups.get(e.selector.canonical);
        if (!g) {
          g = { selector: e.selector, keys: new Map() };
          groups.set(e.selector.canonical, g);
        }
        let k = g.keys.get(e.after);
        if (k === undefined) {
          k = keys++;
          g.keys.set(e.after, k);
        }
        keyOf.push(k);
      }
      const lags: Lag[] = new Array(keys);
      const all = [...groups.values()];
      for (let i = 0; i < all.length; i += LAG_MANY_MAX_SELECTORS) {
        const params: unknown[] = [LAG_CAP];
        const parts = all.slice(i, i + LAG_MANY_MAX_SELECTORS).map((g) => {
          const values = [...g.keys].map(([after, k]) => `(${k}, $${params.push(after.toString())}::bigint)`);
          const offsets = matchingOffsetsSql(params, g.selector, { bounds: ['"offset" > v.acked'], limit: '$1::bigint' });
          // One pass gives the count and the first offset; its event gives the storage time.
          return `(SELECT v.k, l.n, ${epochMs('e.stored_at')} AS oldest_ms
             FROM (VALUES ${values.join(', ')}) v(k, acked)
             CROSS JOIN LATERAL (SELECT count(*)::int AS n, min(m."offset") AS first FROM (${offsets}) m) l
             LEFT JOIN events e ON e."offset" = l.first)`;
        });
        const { rows } = await sql.query<{ k: number; n: number; oldest_ms: number | null }>(parts.join(' UNION ALL '), params);
        for (const r of rows) lags[Number(r.k)] = { events: Number(r.n), oldestMs: optionalMs(r.oldest_ms) };
      }
      return keyOf.map((k) => lags[k] as Lag);
    },
  };
}
