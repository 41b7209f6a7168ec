import { type Selector, sqlPredicate } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import { toBigInt } from './sql-helpers.ts';
import type { StoredEvent } from './types.ts';

/** One held event, as recorded. */
export interface HeldRow {
  readonly offset: bigint;
  readonly sender: string;
  readonly type: string;
}

/**
 * The `held_events` table (migration 002): the offsets the dispatcher held back because a pause
 * matched them, with their sender and type so "which held events does this pause cover" needs no
 * join with the log. Every method is one statement and rejects when the database fails.
 */
export interface HeldStore {
  /** Records held events (one multi-row INSERT; an offset held already is left as is). */
  add(events: readonly StoredEvent[]): Promise<void>;
  /**
   * Offsets of held events above `after` that match none of `active`, ascending, at most `limit`:
   * what may be released now.
   */
  releasable(active: readonly Selector[], after: bigint, limit: number): Promise<HeldRow[]>;
  /** Forgets released events. */
  remove(offsets: readonly bigint[]): Promise<void>;
  /** Which of these offsets are held now (a replay leaves them out: they have not been released yet). */
  heldAmong(offsets: readonly bigint[]): Promise<Set<bigint>>;
  /** How many held events match the selector. */
  count(selector: Selector): Promise<number>;
  /** How many events are held in all. */
  total(): Promise<number>;
}

/** The HeldStore over an SQL executor. */
export function createHeldStore(sql: SqlExecutor): HeldStore {
  return {
    async add(events) {
      if (events.length === 0) return;
      // Three arrays and unnest: one statement and three parameters whatever the batch size.
      await sql.query(
        `INSERT INTO held_events ("offset", sender, type)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING`,
        [events.map((e) => e.offset.toString()), events.map((e) => e.sender), events.map((e) => e.type)],
      );
    },
    async releasable(active, after, limit) {
      const params: unknown[] = [after.toString(), limit];
      const preds: string[] = [];
      for (const s of active) {
        const p = sqlPredicate(s, { firstParam: params.length + 1 });
        params.push(...p.params);
        preds.push(p.sql);
      }
      const where = preds.length === 0 ? '' : `AND NOT (${preds.join(' OR ')})`;
      const { rows } = await sql.query<{ off: string; sender: string; type: string }>(
        // (ordered by the bigint column: an alias of its text would sort 10 before 8)
        `SELECT "offset"::text AS off, sender, type FROM held_events WHERE "offset" > $1::bigint ${where} ORDER BY held_events."offset" LIMIT $2`,
        params,
      );
      return rows.map((r) => ({ offset: toBigInt(r.off), sender: r.sender, type: r.type }));
    },
    async remove(offsets) {
      if (offsets.length === 0) return;
      await sql.query(`DELETE FROM held_events WHERE "offset" = ANY($1::bigint[])`, [offsets.map(String)]);
    },
    async heldAmong(offsets) {
      if (offsets.length === 0) return new Set();
      const { rows } = await sql.query<{ off: string }>(
        `SELECT "offset"::text AS off FROM held_events WHERE "offset" = ANY($1::bigint[])`,
        [offsets.map(String)],
      );
      return new Set(rows.map((r) => toBigInt(r.off)));
    },
    async count(selector) {
      const p = sqlPredicate(selector);
      const { rows } = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM held_events WHERE ${p.sql}`, p.params);
      return Number(rows[0]?.n ?? 0);
    },
    async total() {
      const { rows } = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM held_events', []);
      return Number(rows[0]?.n ?? 0);
    },
  };
}
