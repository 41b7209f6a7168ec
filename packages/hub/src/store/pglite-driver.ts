import { PGlite } from '@electric-sql/pglite';
import type { Driver, ScriptExecutor } from './driver.ts';

/**
 * The embedded driver: PGlite (PostgreSQL compiled to WebAssembly) in a data directory. One
 * connection; PGlite queues statements itself, and a transaction holds it exclusively.
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
