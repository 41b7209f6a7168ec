import { ErrorCodes, HeraldError } from '@herald/core';
import pg from 'pg';
import type { Driver, ReadExecutor, ScriptExecutor } from './driver.ts';

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

/**
 * SQLSTATEs that mean the connection, not the statement, failed: connection exceptions (class 08),
 * insufficient resources (class 53: too many connections, out of memory) and operator intervention
 * other than a cancelled statement (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
 * connect now).
 */
function connectionFailed(err: unknown): boolean {
  // A parameter the driver could not encode fails in process, before anything was sent.
  if (err instanceof TypeError || err instanceof RangeError) return false;
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true; // ECONNRESET, "Connection terminated", …
  return code.startsWith('08') || code.startsWith('53') || code.startsWith('57P');
}

/** SQLSTATE query_canceled: here, statement_timeout (the read pool's connections cancel nothing else). */
const QUERY_CANCELED = '57014';

/**
 * The read pool: a `pg` pool of its own whose connections set `statement_timeout`, so a slow read
 * is cancelled by PostgreSQL itself (its connection is then free again) and readers can never hold
 * the connections the writer needs. Failures are translated once, here: a cancelled statement is
 * TIMEOUT naming `timeoutSetting`; a connection that cannot be had (server down, pool busy past
 * 5 s, the database refusing connections) or that broke mid-statement is UNAVAILABLE, and a broken
 * connection is discarded (the next read opens a fresh one). Anything else is a statement
 * PostgreSQL refused: rethrown as it is.
 */
export function createPgReader(
  url: string,
  options: { max: number; statementTimeoutMs: number; timeoutSetting?: string; onError?: (err: Error) => void },
): ReadExecutor & { pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max,
    // Also how long a read waits for a free connection of a busy pool before it is UNAVAILABLE.
    connectionTimeoutMillis: 5000,
    keepAlive: true,
    statement_timeout: options.statementTimeoutMs,
    application_name: 'herald-reads',
  });
  pool.on('error', (err) => options.onError?.(err));
  const seconds = options.statementTimeoutMs / 1000;
  const setting = options.timeoutSetting ?? 'HERALD_QUERY_TIMEOUT';
  return {
    pool,
    async query<T>(sql: string, params?: unknown[], prepared?: string) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (cause) {
        throw new HeraldError(ErrorCodes.UNAVAILABLE, `cannot read the log: no database connection (${(cause as Error).message})`, {
          cause,
        });
      }
      // A checked-out client has no listener of the pool's: a connection that drops mid-read would
      // emit an unhandled 'error' and end the process. The read's own rejection reports it.
      const onError = () => undefined;
      client.on('error', onError);
      try {
        const r = await client.query(statement(sql, params, prepared));
        client.off('error', onError);
        client.release();
        return { rows: r.rows as T[] };
      } catch (err) {
        client.off('error', onError);
        const code = (err as { code?: unknown }).code;
        if (code === QUERY_CANCELED) {
          client.release();
          throw new HeraldError(
            ErrorCodes.TIMEOUT,
            `the read ran longer than ${seconds} s (${setting}) and was cancelled: narrow it (a selector, an offset or time range, a smaller limit)`,
            { cause: err },
          );
        }
        if (connectionFailed(err)) {
          client.release(err as Error);
          throw new HeraldError(ErrorCodes.UNAVAILABLE, `cannot read the log: the database connection failed (${(err as Error).message})`, {
            cause: err,
          });
        }
        client.release();
        throw err;
      }
    },
    async close() {
      await pool.end();
    },
  };
}
