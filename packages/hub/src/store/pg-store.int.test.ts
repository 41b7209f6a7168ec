import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createEvent, ErrorCodes, hasCode, ValidationError } from '@herald/core';
import { baseDatabaseUrl, createTestDatabase, type TestDatabase } from '@herald/testing';
import pg from 'pg';
import { openStore } from './open.ts';
import { storeSuite } from './store.suite.ts';

let db: TestDatabase | undefined;
storeSuite(
  'PostgreSQL',
  async () => {
    db = await createTestDatabase('store');
    return openStore({ url: db.url });
  },
  async () => db?.drop(),
);

let leaseDb: TestDatabase;
before(async () => {
  leaseDb = await createTestDatabase('lease');
});
after(async () => leaseDb.drop());

test('one writer at a time: a second lease is refused while the first is held, granted after close', async () => {
  const a = await openStore({ url: leaseDb.url });
  const b = await openStore({ url: leaseDb.url });
  try {
    await a.migrate();
    assert.equal(await a.acquireWriterLease(), true);
    assert.equal(await b.acquireWriterLease(), false);
    await assert.rejects(
      b.append([]).then(() => b.append([{} as never])),
      /writer lease/,
    );
    await a.close();
    assert.equal(await b.acquireWriterLease(), true);
  } finally {
    await b.close();
  }
});

test('a URL of another scheme, or no URL at all, is refused naming the setting', async () => {
  for (const url of ['mysql://x@y/z', 'not a url']) {
    await assert.rejects(openStore({ url }), (err) => {
      assert.ok(err instanceof ValidationError);
      assert.ok(hasCode(err, ErrorCodes.INVALID_CONFIG));
      assert.match(err.message, /HERALD_DATABASE_URL/);
      return true;
    });
  }
});

/** Runs SQL as the admin user on the server's default database. */
async function admin<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: baseDatabaseUrl });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

test('a dropped lease connection loses the lease: onLeaseLost, append refused, then re-acquired', async () => {
  let lost: (err?: unknown) => void = () => {};
  const lostNow = new Promise((resolve) => {
    lost = resolve;
  });
  const a = await openStore({ url: leaseDb.url, onLeaseLost: (err) => lost(err) });
  const b = await openStore({ url: leaseDb.url });
  try {
    await a.migrate();
    assert.equal(await a.acquireWriterLease(), true);
    await a.append([createEvent({ sender: 'lease', type: 'one', data: 1 })]);
    const head = await a.headOffset();
    // Kill the session that holds the advisory lock, as a server restart or a network cut would.
    const killed = await admin<{ ok: boolean }>(
      `SELECT pg_terminate_backend(l.pid) AS ok FROM pg_locks l JOIN pg_database d ON d.oid = l.database
       WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1`,
      [leaseDb.name],
    );
    assert.equal(killed.length, 1);
    await lostNow;
    await assert.rejects(a.append([createEvent({ sender: 'lease', type: 'two', data: 2 })]), (err) => hasCode(err, ErrorCodes.CONFLICT));
    // The lock went with the session: another hub may take over, and the first one is refused.
    assert.equal(await b.acquireWriterLease(), true);
    const { stored } = await b.append([createEvent({ sender: 'lease', type: 'three', data: 3 })]);
    assert.equal(stored[0]?.offset, head + 1n);
    assert.equal(await a.acquireWriterLease(), false);
    await b.close();
    // Re-acquired: the head is read afresh, so offsets continue after the other writer's.
    assert.equal(await a.acquireWriterLease(), true);
    const again = await a.append([createEvent({ sender: 'lease', type: 'four', data: 4 })]);
    assert.equal(again.stored[0]?.offset, head + 2n);
  } finally {
    await a.close();
    await b.close();
  }
});

test('pool connections killed by the server do not crash the process; the next query reconnects', async () => {
  const errors: Error[] = [];
  const s = await openStore({ url: leaseDb.url, onError: (err) => errors.push(err) });
  try {
    // Several idle pooled connections.
    await Promise.all([s.ping(), s.ping(), s.ping()]);
    await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [leaseDb.name]);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(errors.length > 0, 'idle connection errors are reported to onError');
    await s.ping();
    assert.ok((await s.headOffset()) >= 0n);
  } finally {
    await s.close();
  }
});

test('two hubs migrating one database at once apply each migration once', async () => {
  const fresh = await createTestDatabase('migrate');
  const [x, y] = [await openStore({ url: fresh.url }), await openStore({ url: fresh.url })];
  try {
    await Promise.all([x.migrate(), y.migrate()]);
    const { rows } = await x.sql.query<{ n: number; distinct: number }>(
      'SELECT count(*)::int AS n, count(DISTINCT version)::int AS distinct FROM schema_migrations',
    );
    assert.equal(rows[0]?.n, rows[0]?.distinct);
    assert.ok((rows[0]?.n ?? 0) >= 1);
  } finally {
    await x.close();
    await y.close();
    await fresh.drop();
  }
});

test('an unreachable server is reported with where', async () => {
  await assert.rejects(openStore({ url: 'postgres://root@127.0.0.1:1/nowhere' }), /cannot reach PostgreSQL at 127\.0\.0\.1:1/);
});
