import pg from 'pg';
import type { Driver, ScriptExecutor } from './driver.ts';

// int8 (bigint) comes back as a string by default; keep it so (no precision loss), callers use BigInt.

/** A query config; with a name, `pg` prepares it once per connection and then only binds and executes. */
function statement(text: string, values: unknown[] | undefined, name: string | undefined): pg.QueryConfig {
  return name === undefined ? { text, values } : { name, text, values };
}

/**
 * The `pg` driver: a pool against a PostgreSQL server. A connection that drops is discarded by the
 * pool and the next query opens a fresh one, so the store recovers by itself once the server is
 * back; queries meanwhile reject.
 */
export function createPgDriver(url: string, options: { max?: number; onError?: (err: Error) => void } = {}): Driver & { pool: pg.Pool } {
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 4, connectionTimeoutMillis: 5000, keepAlive: true });
  // An idle client's connection dropping is reported here; without a listener it would crash the process.
  pool.on('error', (err) => options.onError?.(err));
  const wrap = (client: pg.PoolClient): ScriptExecutor => ({
    query: async <T>(sql: string, params?: unknown[], prepared?: string) => {
      const r = await client.query(statement(sql, params, prepared));
      return { rows: r.rows as T[] };
    },
    exec: async (sql: string) => {
      await client.query(sql);
    },
  });
  return {
    pool,
    async query<T>(sql: string, params?: unknown[], prepared?: string) {
      const r = await pool.query(statement(sql, params, prepared));
      return { rows: r.rows as T[] };
    },
    async exec(sql: string) {
      await pool.query(sql);
    },
    async transaction<T>(fn: (tx: ScriptExecutor) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken = false;
      const onError = () => {
        broken = true;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw err;
      } finally {
        client.off('error', onError);
        // A client whose connection failed must not go back to the pool.
        client.release(broken ? true : undefined);
      }
    },
    async close() {
      await pool.end();
    },
  };
}
