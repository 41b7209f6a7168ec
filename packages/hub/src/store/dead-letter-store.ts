import { type Selector, sqlPredicate } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import type { DeadLetter } from './types.ts';

/** A stored dead letter with its id and what redrives did to it. */
export interface StoredDeadLetter extends DeadLetter {
  readonly id: bigint;
  /** When it was last re-sent, epoch ms; undefined when never. */
  readonly redrivenAt: number | undefined;
  readonly redrives: number;
}

/** Which dead letters: those whose routing key `<sender>.<type>` the selector matches, of an error code. */
export interface DeadLetterFilter {
  readonly selector?: Selector | undefined;
  readonly code?: string | undefined;
}

/** The `dead_letters` table (migrations 001, 007), beyond the ingest's inserts. */
export interface DeadLetterStore {
  /** Oldest first, after the id `after`, at most `limit`. */
  list(filter: DeadLetterFilter, after: bigint, limit: number): Promise<StoredDeadLetter[]>;
  get(id: bigint): Promise<StoredDeadLetter | undefined>;
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
}

const COLUMNS = `id::text AS id, (extract(epoch from at) * 1000)::float8 AS at_ms, reason, code, exchange, routing_key, message_id,
  properties, body, (extract(epoch from redriven_at) * 1000)::float8 AS redriven_ms, redrives`;

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
  };
}

export function createDeadLetterStore(sql: SqlExecutor): DeadLetterStore {
  return {
    async list(filter, after, limit) {
      const params: unknown[] = [after.toString()];
      const cond = where(filter, params);
      params.push(limit);
      const r = await sql.query<Row>(
        `SELECT ${COLUMNS} FROM dead_letters WHERE id > $1::bigint AND ${cond} ORDER BY id LIMIT $${params.length}`,
        params,
      );
      return r.rows.map(toLetter);
    },
    async get(id) {
      const r = await sql.query<Row>(`SELECT ${COLUMNS} FROM dead_letters WHERE id = $1::bigint`, [id.toString()]);
      return r.rows[0] ? toLetter(r.rows[0]) : undefined;
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
