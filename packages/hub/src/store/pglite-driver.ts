import { PGlite } from '@electric-sql/pglite';
import type { Driver, ScriptExecutor } from './driver.ts';

/**
 * The embedded driver: PGlite (PostgreSQL compiled to WebAssembly) in a data directory. One
 * connection; PGlite queues statements itself, and a transaction holds it exclusively.
 *
 * So the embedded store has no read pool: reads and writes share that one connection and queue
 * behind each other. Nor a statement timeout: PGlite's WebAssembly build has no timer to fire
 * statement_timeout (`SET statement_timeout = '500ms'` then `SELECT pg_sleep(2)` runs the full 2 s),
 * and a timeout kept in JavaScript could answer the caller but not stop the statement, which would
 * go on holding the connection. What bounds a read there is its limit (and `maxBytes`).
 */
export async function createPgliteDriver(dataDir: string): Promise<Driver & { db: PGlite }> {
  const db = await PGlite.create(dataDir);
  const run = (q: { query: PGlite['query']; exec: PGlite['exec'] }): ScriptExecutor => ({
    query: async <T>(sql: string, params?: unknown[]) => {
      const r = await q.query<T>(sql, params);
      return { rows: r.rows };
    },
    exec: async (sql: string) => {
      await q.exec(sql);
    },
  });
  const top = run(db);
  return {
    db,
    query: top.query,
    exec: top.exec,
    transaction: <T>(fn: (tx: ScriptExecutor) => Promise<T>) => db.transaction((tx) => fn(run(tx as unknown as PGlite))),
    async close() {
      await db.close();
    },
  };
}
