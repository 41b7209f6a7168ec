// The read pool on a real PostgreSQL: reads run on connections of their own with a statement
// timeout, so a slow or hanging read answers TIMEOUT, a read pool that is busy or cannot connect
// answers UNAVAILABLE, and in every case appends (the writer's pool and the lease) go on.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEvent, ErrorCodes, HeraldError } from '@herald/core';
import { baseDatabaseUrl, createTestDatabase, startProxy, type TestDatabase, waitFor } from '@herald/testing';
import pg from 'pg';
import { openStore } from './open.ts';
import { createPgReader } from './pg-driver.ts';
import type { SqlStore } from './sql-store.ts';

const event = (n: number) => createEvent({ sender: 'reads', type: 'probe', data: { n } });

/** A rejection with a HeraldError of `code` whose message matches `message`. */
const herald = (code: string, message: RegExp) => (err: unknown) => {
  assert.ok(err instanceof HeraldError, `a HeraldError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  return true;
};

describe('the read pool (PostgreSQL)', { timeout: 120_000 }, () => {
  /** The database of the test running: one each, so each starts with an empty log and its own lease. */
  let db: TestDatabase;
  const dbs: TestDatabase[] = [];
  let admin: pg.Client;
  const stores: SqlStore[] = [];

  /**
   * A fresh database and a migrated store on it holding the writer lease, with one event appended
   * (so the writer's pool has a connection open).
   */
  const open = async (options: { readPoolSize: number; queryTimeoutMs: number }): Promise<SqlStore> => {
    db = await createTestDatabase('readpool');
    dbs.push(db);
    const store = await openStore({ url: db.url, ...options });
    stores.push(store);
    await store.migrate();
    assert.equal(await store.acquireWriterLease(), true);
    await store.append([event(0)]);
    return store;
  };
  /** Reader backends of this database running pg_sleep. */
  const sleepingReaders = async (): Promise<number[]> => {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
       WHERE datname = $1 AND application_name = 'herald-reads' AND state = 'active' AND query LIKE '%pg_sleep%'`,
      [db.name],
    );
    return rows.map((r) => r.pid);
  };

  before(async () => {
    admin = new pg.Client({ connectionString: baseDatabaseUrl });
    await admin.connect();
  });
  after(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    await admin?.end();
    for (const d of dbs) await d.drop();
  });

  test('a read longer than the query timeout is cancelled with TIMEOUT naming the setting; appends go on meanwhile', async () => {
    const store = await open({ readPoolSize: 2, queryTimeoutMs: 1000 });
    const started = Date.now();
    let settledAt: number | undefined;
    const slow = store.reads.query('SELECT pg_sleep(10)').finally(() => {
      settledAt = Date.now();
    });
    slow.catch(() => undefined);
    const settled = () => settledAt;
    await waitFor('the slow read to run', async () => (await sleepingReaders()).length === 1, 5000, 20);
    // The writer is not behind it: appends commit while the read still runs.
    const { stored } = await store.append([event(1), event(2)]);
    assert.equal(stored.length, 2);
    assert.equal(settled(), undefined, 'the append finished before the read was cancelled');
    await assert.rejects(slow, herald(ErrorCodes.TIMEOUT, /longer than 1 s \(HERALD_QUERY_TIMEOUT\)/));
    const took = Number(settled()) - started;
    assert.ok(took >= 900 && took < 8000, `cancelled after ${took} ms, not after the 10 s sleep`);
    // PostgreSQL cancelled the statement, not the connection: the pool reads on.
    assert.deepEqual(
      (await store.query({ selector: 'reads:probe', limit: 10 })).map((e) => e.offset),
      [1n, 2n, 3n],
    );
  });

  test('with every reader connection busy, appends and state writes go on; a read that finds no connection is UNAVAILABLE', async () => {
    const store = await open({ readPoolSize: 2, queryTimeoutMs: 120_000 });
    const hogs = [store.reads.query('SELECT pg_sleep(60)'), store.reads.query('SELECT pg_sleep(60)')];
    for (const h of hogs) h.catch(() => undefined);
    await waitFor('both reader connections busy', async () => (await sleepingReaders()).length === 2, 5000, 20);
    // store.query goes through the read pool: it waits for a connection, then gives up.
    const queued = store.query({ selector: 'reads:*', limit: 10 });
    for (let i = 0; i < 20; i++) await store.append([event(100 + i)]);
    await store.setState('read-pool-test', { ok: true });
    assert.deepEqual(await store.getState('read-pool-test'), { ok: true });
    assert.equal(await store.headOffset(), 21n, 'the head is read on the writer pool');
    await assert.rejects(queued, herald(ErrorCodes.UNAVAILABLE, /cannot read the log: no database connection/));
    // A reader connection that breaks mid-read is UNAVAILABLE too; the pool then opens fresh ones.
    const pids = await sleepingReaders();
    await admin.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
    for (const h of hogs) await assert.rejects(h, herald(ErrorCodes.UNAVAILABLE, /connection failed/));
    assert.equal((await store.query({ selector: 'reads:*', limit: 100 })).length, 21);
  });

  test('a read pool that cannot connect fails reads with UNAVAILABLE, never the writer', async () => {
    const store = await open({ readPoolSize: 2, queryTimeoutMs: 30_000 });
    // No new connection to the database from now on; the writer keeps the ones it has.
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    try {
      await assert.rejects(store.query({ limit: 10 }), herald(ErrorCodes.UNAVAILABLE, /cannot read the log: no database connection/));
      await assert.rejects(store.getByOffset(1n), herald(ErrorCodes.UNAVAILABLE, /cannot read the log/));
      const { stored } = await store.append([event(1)]);
      assert.equal(stored.length, 1);
    } finally {
      await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    }
    assert.equal((await store.getByOffset(2n))?.offset, 2n, 'reads work again once the database takes connections');
  });
  test('a read whose connection is reset mid-query is UNAVAILABLE, and the process goes on', async () => {
    db = await createTestDatabase('readpool');
    dbs.push(db);
    const target = new URL(db.url);
    const proxy = await startProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const url = new URL(db.url);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    const reader = createPgReader(url.toString(), { max: 2, statementTimeoutMs: 30_000 });
    try {
      const slow = reader.query('SELECT pg_sleep(5)');
      await waitFor('the read running', async () => (await sleepingReaders()).length === 1, 5000, 20);
      // A reset socket, not a server's FATAL message: pg emits 'error' on the checked-out client
      // at once, which ended the process when nothing listened.
      proxy.cut();
      await assert.rejects(slow, herald(ErrorCodes.UNAVAILABLE, /connection failed/));
      proxy.restore();
      assert.deepEqual((await reader.query<{ n: number }>('SELECT 1 AS n')).rows, [{ n: 1 }], 'a fresh connection serves the next read');
    } finally {
      await reader.close().catch(() => undefined);
      await proxy.close();
    }
  });
});
