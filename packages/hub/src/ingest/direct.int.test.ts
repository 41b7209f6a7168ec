import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ErrorCodes } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost } from '@herald/testing';
import { pino } from 'pino';
import { normalizeConfig } from '../config/index.ts';
import { createReceiver, events, type TestReceiver } from '../dispatcher/test-kit.ts';
import { EventPath } from '../event-path.ts';
import { openStore, type SqlStore } from '../store/index.ts';

// The direct path (Ingest.append): the hub stores the events itself, in the serial line of the
// batches from RabbitMQ, and the flow forwards them to herald.events.
describe('direct append: stored, duplicate or refused per event, then forwarded (router mode, PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let store: SqlStore;
  let path: EventPath;
  let rx: TestReceiver;

  before(async () => {
    [db, vhost] = await Promise.all([createTestDatabase('direct'), createTestVhost('direct')]);
    store = await openStore({ url: db.url });
    await store.migrate();
    assert.ok(await store.acquireWriterLease());
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode: 'router', httpPort: 0, grpcPort: 0 }, {});
    path = new EventPath({
      config,
      store,
      logger: pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' }),
      inspect: (event) => {
        if (event.type === 'parcel.sent') throw new Error('parcel.sent is not in the catalog');
      },
    });
    rx = await createReceiver(vhost.url, 'direct-rx');
    await path.start();
  });
  after(async () => {
    await path?.stop();
    await rx?.close();
    await store?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('each event answers once committed, in order; the flow forwards the stored ones with their offsets', async () => {
    const [a, b, c] = events([
      ['billing', 'invoice.paid'],
      ['shipping', 'parcel.sent'],
      ['billing', 'invoice.sent'],
    ]) as [ReturnType<typeof events>[number], ReturnType<typeof events>[number], ReturnType<typeof events>[number]];
    const first = await path.ingest.append([a, b, c, a], 'billing-service');
    assert.equal(first.length, 4);
    assert.deepEqual(first[0], { offset: 1n, duplicate: false });
    assert.ok('error' in (first[1] as object), 'the event the inspection refuses is refused, the rest stored');
    const refusal = (first[1] as { error: { code: string; message: string } }).error;
    assert.equal(refusal.code, ErrorCodes.INVALID_EVENT);
    assert.match(refusal.message, /parcel.sent is not in the catalog/);
    assert.deepEqual(first[2], { offset: 2n, duplicate: false });
    assert.deepEqual(first[3], { offset: 1n, duplicate: true }, 'the same id twice in one call: the second is a duplicate of the first');
    const again = await path.ingest.append([a], undefined);
    assert.deepEqual(again, [{ offset: undefined, duplicate: true }], 'an id the log has is a duplicate');
    assert.equal(await store.headOffset(), 2n, 'stored once each');
    await rx.waitFor(2);
    assert.deepEqual(
      rx.seen.map((s) => s.offset),
      [1n, 2n],
      'forwarded to herald.events in offset order',
    );
  });

  test('a stopped ingest refuses with UNAVAILABLE (the caller retries elsewhere)', async () => {
    await path.ingest.stop();
    await assert.rejects(
      path.ingest.append(events([['billing', 'x']]), undefined),
      (err: { code?: string }) => err.code === ErrorCodes.UNAVAILABLE,
    );
  });
});
