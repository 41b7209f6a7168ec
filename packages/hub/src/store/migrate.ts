import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Driver } from './driver.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/** The migration files, `NNN_name.sql`, in order. */
export async function migrationFiles(): Promise<{ version: number; name: string; path: string }[]> {
  const names = (await readdir(MIGRATIONS_DIR)).filter((n) => /^\d{3}_.+\.sql$/.test(n)).sort();
  return names.map((name) => ({ version: Number(name.slice(0, 3)), name, path: `${MIGRATIONS_DIR}${name}` }));
}

/** The advisory lock that serializes migrations when several hubs start at once on one server. */
const MIGRATION_LOCK = '79471160674631'; // any fixed number (0x4847524d4947, "HGRMIG")

/**
 * Applies the migrations not yet recorded in `schema_migrations`, each in its own transaction, in
 * order. Each transaction first takes a transaction-scoped advisory lock and re-checks the record,
 * so two hubs migrating at once apply each file once. A failing migration rolls back whole (earlier
 * ones stay) and the error names its file; the next `migrate()` retries it.
 */
export async function migrate(db: Driver): Promise<string[]> {
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK]);
    await tx.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
  });
  const { rows } = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
  const done = new Set(rows.map((r) => Number(r.version)));
  const applied: string[] = [];
  for (const m of await migrationFiles()) {
    if (done.has(m.version)) continue;
    const sql = await readFile(m.path, 'utf8');
    try {
      const ran = await db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK]);
        const again = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
        if (again.rows.length > 0) return false; // another hub applied it meanwhile
        // A multi-statement script without parameters: the simple query protocol on both drivers.
        await tx.exec(sql);
        await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
        return true;
      });
      if (ran) applied.push(m.name);
    } catch (cause) {
      throw new Error(`migration ${m.name} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
  }
  return applied;
}
