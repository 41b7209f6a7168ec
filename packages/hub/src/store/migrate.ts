import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Driver } from './driver.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/** The migration files, `NNN_name.sql`, in order. */
export async function migrationFiles(): Promise<{ version: number; name: string; path: string }[]> {
  const names = (await readdir(MIGRATIONS_DIR)).filter((n) => /^\d{3}_.+\.sql$/.test(n)).sort();
  return names.map((name) => ({ version: Number(name.slice(0, 3)), name, path: `${MIGRATIONS_DIR}${name}` }));
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`, each in its own transaction, in
 * order. A failing migration rolls back whole and the error names its file.
 */
export async function migrate(db: Driver): Promise<string[]> {
  await db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
  );
  const { rows } = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
  const done = new Set(rows.map((r) => Number(r.version)));
  const applied: string[] = [];
  for (const m of await migrationFiles()) {
    if (done.has(m.version)) continue;
    const sql = await readFile(m.path, 'utf8');
    try {
      await db.transaction(async (tx) => {
        // A multi-statement script without parameters: the simple query protocol on both drivers.
        await tx.exec(sql);
        await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      });
    } catch (cause) {
      throw new Error(`migration ${m.name} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
    applied.push(m.name);
  }
  return applied;
}
