import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ErrorCodes, HeraldError, ValidationError } from '@herald/core';
import pg from 'pg';
import { createPgDriver, createPgReader } from './pg-driver.ts';
import { createPgliteDriver } from './pglite-driver.ts';
import { SqlStore, type WriterLease } from './sql-store.ts';

/** The default directory of the embedded store. */
export const DEFAULT_DATA_DIR = './.herald/store';
/** The advisory lock key of the writer lease: any fixed 64-bit number, the same for every hub. */
const LEASE_KEY = 0x48455241_4c44n; // "HERALD"

export interface OpenStoreOptions {
  /** `postgres://…` or `postgresql://…` selects a PostgreSQL server; absent, the embedded store. */
  url?: string | undefined;
  /** The embedded store's directory. Default `./.herald/store`. */
  dataDir?: string | undefined;
  /** Called when a held writer lease is lost (its connection dropped): stop appending, re-acquire. */
  onLeaseLost?: ((err?: unknown) => void) | undefined;
  /** Called for connection errors the pool recovers from by itself (for logging). */
  onError?: ((err: Error) => void) | undefined;
  /** PostgreSQL: connections of the read pool (queries, catch-up, pulls, replays). Default 4. */
  readPoolSize?: number | undefined;
  /**
   * PostgreSQL: the read pool's statement timeout, in ms; a read running longer is cancelled and
   * rejects with TIMEOUT. Default 30,000. The embedded store cannot enforce one (pglite-driver.ts).
   */
  queryTimeoutMs?: number | undefined;
}

/**
 * Opens the log: PostgreSQL for a `postgres://` URL, else the embedded store (PGlite) in `dataDir`.
 * Does not migrate: call `migrate()`. Rejects with INVALID_CONFIG for a URL of another scheme,
 * UNAVAILABLE when the database cannot be reached, CONFLICT when another live process (or an open
 * store in this one) holds the embedded store's directory; a lock file left by a dead process is
 * taken over.
 */
export async function openStore(options: OpenStoreOptions = {}): Promise<SqlStore> {
  const url = options.url?.trim();
  if (url) {
    let scheme: string;
    try {
      scheme = new URL(url).protocol;
    } catch {
      throw new ValidationError(
        ErrorCodes.INVALID_CONFIG,
        `HERALD_DATABASE_URL ${JSON.stringify(url)} is not a URL: expected postgres://user@host:port/db`,
      );
    }
    if (scheme !== 'postgres:' && scheme !== 'postgresql:') {
      throw new ValidationError(
        ErrorCodes.INVALID_CONFIG,
        `HERALD_DATABASE_URL must be a postgres:// URL (or unset for the embedded store), got ${scheme}//`,
      );
    }
    const db = createPgDriver(url, { onError: options.onError });
    try {
      await db.query('SELECT 1');
    } catch (cause) {
      await db.close().catch(() => {});
      const where = new URL(url);
      throw new HeraldError(
        ErrorCodes.UNAVAILABLE,
        `cannot reach PostgreSQL at ${where.host}${where.pathname}: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
    // Readers get connections of their own: however many reads run or hang, the writer's pool and
    // the lease connection stay free. The pool connects lazily, so a read pool that cannot connect
    // fails reads (UNAVAILABLE), never the start or the writer.
    const reads = createPgReader(url, {
      max: options.readPoolSize ?? 4,
      statementTimeoutMs: options.queryTimeoutMs ?? 30_000,
      onError: options.onError,
    });
    return new SqlStore('postgres', db, pgLease(url, options.onLeaseLost), async () => {}, reads);
  }
  const dir = resolve(options.dataDir ?? DEFAULT_DATA_DIR);
  mkdirSync(dir, { recursive: true });
  const unlock = lockDirectory(dir);
  try {
    const db = await createPgliteDriver(join(dir, 'pgdata'));
    return new SqlStore('embedded', db, { acquire: async () => true, held: true, release: async () => {} }, async () => unlock());
  } catch (err) {
    unlock();
    throw err;
  }
}

/**
 * The writer lease on PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection
 * of its own, held open. When that connection errors or ends, PostgreSQL has released the lock, so
 * the lease counts as lost at once: `onLost` is called and `append` refuses until `acquire` succeeds
 * again. TCP keepalive makes a silently dead peer show up as an error rather than hang forever.
 */
function pgLease(url: string, onLost: ((err?: unknown) => void) | undefined): WriterLease {
  let client: pg.Client | undefined;
  let held = false;
  let pending: Promise<boolean> | undefined;
  const lost = (c: pg.Client, err: unknown) => {
    if (client !== c) return; // an older connection, already given up
    client = undefined;
    if (held) {
      held = false;
      onLost?.(err);
    }
  };
  const take = async (): Promise<boolean> => {
    const c = new pg.Client({ connectionString: url, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    // Without a listener an error on this idle connection would crash the process.
    c.on('error', (err) => lost(c, err));
    c.on('end', () => lost(c, new Error('the writer lease connection ended')));
    try {
      await c.connect();
      const { rows } = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [LEASE_KEY.toString()]);
      if (rows[0]?.ok !== true) {
        await c.end().catch(() => {});
        return false;
      }
    } catch (err) {
      await c.end().catch(() => {});
      throw err;
    }
    client = c;
    held = true;
    return true;
  };
  return {
    get held() {
      return held;
    },
    async acquire() {
      if (held) return true;
      // Two callers at once share one attempt, so at most one lease connection is open.
      pending ??= take().finally(() => {
        pending = undefined;
      });
      return pending;
    },
    async release() {
      held = false;
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
    },
  };
}

/** Embedded store directories open in this process: PGlite must not open one twice either. */
const openDirs = new Set<string>();

/**
 * Guards the embedded store's directory with a lock file holding our pid: PGlite must not be opened
 * by two processes at once (nor twice by one). A lock left by a process that no longer runs is
 * taken over. Throws CONFLICT naming the holder.
 */
function lockDirectory(dir: string): () => void {
  if (openDirs.has(dir)) {
    throw new HeraldError(ErrorCodes.CONFLICT, `the embedded store in ${dir} is already open in this process; close it first`);
  }
  const path = join(dir, 'herald.lock');
  try {
    writeFileSync(path, String(process.pid), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const pid = Number(readFileSync(path, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new HeraldError(
        ErrorCodes.CONFLICT,
        `the embedded store in ${dir} is in use by process ${pid}; stop it, or set HERALD_DATABASE_URL`,
      );
    }
    writeFileSync(path, String(process.pid));
  }
  openDirs.add(dir);
  return () => {
    openDirs.delete(dir);
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path);
    } catch {
      // already gone
    }
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
