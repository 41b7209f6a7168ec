import { parseSelector, type Selector } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import { epochMs } from './sql-helpers.ts';

/** An exchange Herald made for a client. */
export interface ExchangeRecord {
  readonly name: string;
  readonly selector: Selector;
  readonly createdAt: number;
}

/** The `exchanges` table (migration 006). Every method is one statement. */
export interface ExchangeStore {
  /** Inserts; the record of that name when there is one already (nothing written then). */
  insert(record: ExchangeRecord): Promise<ExchangeRecord | undefined>;
  get(name: string): Promise<ExchangeRecord | undefined>;
  list(): Promise<ExchangeRecord[]>;
  count(): Promise<number>;
  /** False when absent. */
  delete(name: string): Promise<boolean>;
}

interface Row {
  name: string;
  selector: string;
  created_ms: number;
}

const COLUMNS = `name, selector, ${epochMs('created_at')} AS created_ms`;
const toRecord = (r: Row): ExchangeRecord => ({ name: r.name, selector: parseSelector(r.selector), createdAt: Number(r.created_ms) });

export function createExchangeStore(sql: SqlExecutor): ExchangeStore {
  return {
    async insert(record) {
      const r = await sql.query<Row>(
        `WITH ins AS (INSERT INTO exchanges (name, selector, created_at) VALUES ($1, $2, to_timestamp($3 / 1000.0))
           ON CONFLICT (name) DO NOTHING RETURNING name)
         SELECT ${COLUMNS} FROM exchanges WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM ins)`,
        [record.name, record.selector.canonical, record.createdAt],
      );
      return r.rows[0] ? toRecord(r.rows[0]) : undefined;
    },
    async get(name) {
      const r = await sql.query<Row>(`SELECT ${COLUMNS} FROM exchanges WHERE name = $1`, [name]);
      return r.rows[0] ? toRecord(r.rows[0]) : undefined;
    },
    async list() {
      const r = await sql.query<Row>(`SELECT ${COLUMNS} FROM exchanges ORDER BY name`);
      return r.rows.map(toRecord);
    },
    async count() {
      const r = await sql.query<{ n: number | string }>('SELECT count(*) AS n FROM exchanges');
      return Number(r.rows[0]?.n ?? 0);
    },
    async delete(name) {
      const r = await sql.query('DELETE FROM exchanges WHERE name = $1 RETURNING name', [name]);
      return r.rows.length === 1;
    },
  };
}
