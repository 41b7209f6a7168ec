import { parseSelector, type Selector, sqlPredicate } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import { type Lag, type LagEntry, lagMany } from './lag-sql.ts';

export { LAG_CAP, LAG_MANY_MAX_SELECTORS, type Lag, type LagEntry } from './lag-sql.ts';

import { matchingOffsetsSql } from './selector-sql.ts';
import { epochMs, toBigInt, tsParam } from './sql-helpers.ts';

/** A subscription as kept in the `subscriptions` table (migration 003). */
export interface SubscriptionRecord {
  readonly name: string;
  readonly selector: Selector;
  readonly ackedOffset: bigint;
  readonly createdAt: number;
}

/** A row of the `receivers` table: the RabbitMQ queue an earlier version kept for a selector. */
export interface ReceiverRecord {
  readonly hash: string;
  readonly selector: Selector;
  readonly queue: string;
}

/** The receiver queue of a selector: `herald.sub.<hash>`. */
export function receiverQueue(selector: Selector): string {
  return `herald.sub.${selector.hash}`;
}

/**
 * The `subscriptions` table (migration 003), what is left of the `receivers` table, and the few log
 * queries the manager needs beyond Store.query (offsets only, counts), each selector query one
 * branch per pattern (selector-sql.ts). Every method rejects when the database fails.
 */
export interface SubscriptionStore {
  /**
   * The subscriptions, and the rows of `receivers`: the RabbitMQ queues of earlier versions, which
   * nothing writes any more; the hub deletes those queues at start, then their rows (deleteReceiver).
   */
  loadAll(): Promise<{ subscriptions: SubscriptionRecord[]; receivers: ReceiverRecord[] }>;
  /** Inserts the subscription; one statement. Resolves with the subscription as stored: the existing one when the name was taken (compare selectors). */
  insert(sub: SubscriptionRecord): Promise<SubscriptionRecord>;
  /** Removes the subscription. False when absent. */
  delete(name: string): Promise<boolean>;
  /** Removes the row of an earlier version's receiver queue, once the queue is gone. */
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
  /**
   * Matching events in (after, upTo] (upTo absent: the head), exact up to LAG_CAP, then LAG_CAP;
   * and the storage time of the first one. As lagMany of one entry.
   */
  lag(selector: Selector, after: bigint, upTo?: bigint): Promise<Lag>;
  /**
   * lag() of each entry, in the entries' order, all in (after, upTo]: two statements for selectors
   * of literal names and `*`, however many (lag-sql.ts, lagMany), plus batches of
   * LAG_MANY_MAX_SELECTORS for selectors with wildcard types.
   */
  lagMany(entries: readonly LagEntry[], upTo?: bigint): Promise<Lag[]>;
}

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
  const lags = async (entries: readonly LagEntry[], upTo: bigint | undefined): Promise<Lag[]> => {
    if (entries.length === 0) return [];
    if (upTo === undefined) {
      const { rows } = await sql.query<{ head: string }>('SELECT COALESCE(MAX("offset"), 0)::text AS head FROM events');
      upTo = toBigInt(rows[0]?.head ?? '0');
    }
    return lagMany(sql, entries, upTo);
  };
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
        `WITH s AS (
           INSERT INTO subscriptions (name, selector, acked_offset, created_at, updated_at)
           VALUES ($1, $2, $3::bigint, to_timestamp($4::float8 / 1000), now())
           ON CONFLICT (name) DO NOTHING
           RETURNING ${SUB_COLUMNS}
         )
         SELECT * FROM s UNION ALL SELECT ${SUB_COLUMNS} FROM subscriptions WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM s)`,
        [sub.name, sub.selector.canonical, sub.ackedOffset.toString(), sub.createdAt],
      );
      return toRecord(rows[0] as SubRow);
    },
    async delete(name) {
      const { rows } = await sql.query<{ name: string }>('DELETE FROM subscriptions WHERE name = $1 RETURNING name', [name]);
      return rows.length > 0;
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
    async lag(selector, after, upTo) {
      return (await lags([{ selector, after }], upTo))[0] as Lag;
    },
    lagMany: lags,
  };
}
