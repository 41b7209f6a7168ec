import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '@herald/testing';
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

test('one writer at a time: a second lease waits until the first is released', async () => {
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

test('a URL of another scheme is refused naming the setting', async () => {
  await assert.rejects(openStore({ url: 'mysql://x@y/z' }), /HERALD_DATABASE_URL/);
});

test('an unreachable server is reported with where', async () => {
  await assert.rejects(openStore({ url: 'postgres://root@127.0.0.1:1/nowhere' }), /cannot reach PostgreSQL at 127\.0\.0\.1:1/);
});
