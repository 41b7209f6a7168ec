import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EVENTS_EXCHANGE, Headers, INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  makeEvents,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor as waitUntil,
} from '@herald/testing';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { DISPATCHED_KEY } from './dispatcher/index.ts';
import { checkLog } from './ingest/check-log.ts';
import { openStore } from './store/index.ts';
import type { Store } from './store/types.ts';

const waitFor = (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 60_000) => waitUntil(what, fn, timeoutMs, 100);

describe('hub process, router mode', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let reader: Store;
  let conn: ChannelModel;
  let ch: Channel;
  const procs: HeraldProcess[] = [];
  /** Offsets seen on a queue bound to herald.events, in arrival order. */
  const seen: bigint[] = [];
  const seenIds = new Map<bigint, string>();

  before(async () => {
    vhost = await createTestVhost('router');
    db = await createTestDatabase('router');
    conn = await connect(vhost.url, { noDelay: true });
    ch = await conn.createChannel();
    await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    await ch.assertQueue('receiver', { durable: true });
    await ch.bindQueue('receiver', EVENTS_EXCHANGE, '#');
    await ch.consume(
      'receiver',
      (m) => {
        if (!m) return;
        const o = BigInt(String(m.properties.headers?.[Headers.OFFSET]));
        seen.push(o);
        seenIds.set(o, String(m.properties.messageId));
      },
      { noAck: true },
    );
  });
  after(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await conn?.close().catch(() => undefined);
    await reader?.close();
    await vhost?.delete();
    await db?.drop();
  });

  const env = async (extra: Record<string, string> = {}) => ({
    HERALD_AMQP_URL: vhost.url,
    HERALD_DATABASE_URL: db.url,
    HERALD_MODE: 'router',
    HERALD_HTTP_PORT: String(await freePort()),
    ...extra,
  });

  test('events published to herald.ingest reach herald.events with x-herald-offset 1..N in order', async () => {
    const hub = await startHubProcess(await env());
    procs.push(hub);
    reader = await openStore({ url: db.url });
    const events = makeEvents(5000);
    const pub = await createRawPublisher(vhost.url);
    assert.ok((await pub.publishMany(INGEST_EXCHANGE, events, 500)).every(Boolean));
    await pub.close();
    await waitFor('5000 deliveries', () => seen.length >= 5000);
    await sleep(300);
    assert.equal(seen.length, 5000, 'each event delivered once (no archive binding: nothing twice)');
    assert.deepEqual(
      seen,
      Array.from({ length: 5000 }, (_, i) => BigInt(i + 1)),
    );
    const stored = await reader.getByOffset(1n);
    assert.equal(stored?.id, seenIds.get(1n));
    assert.equal(await hub.kill('SIGTERM'), 0);
    assert.deepEqual(await reader.getState(DISPATCHED_KEY), { offset: '5000' }, 'the checkpoint is written on stop');
  });

  test('SIGKILL between store and forward loses nothing: every stored event is delivered at least once', async () => {
    // The first hub kills itself right after its 3rd store transaction, before forwarding or acking.
    const hub = await startHubProcess(await env({ HERALD_FAULT_KILL_AFTER_BATCH: '3', HERALD_BATCH_SIZE: '200' }));
    procs.push(hub);
    const events = makeEvents(5000);
    const pub = await createRawPublisher(vhost.url);
    const publishing = pub.publishMany(INGEST_EXCHANGE, events, 500);
    assert.equal(await hub.exited, 'SIGKILL');
    const head = await reader.headOffset();
    assert.ok(head > 5000n, 'the killed hub stored some events');
    const hub2 = await startHubProcess(await env());
    procs.push(hub2);
    assert.ok((await publishing).every(Boolean));
    await pub.close();
    await waitFor('10000 stored', async () => (await reader.headOffset()) >= 10_000n);
    await waitFor('every offset delivered', () => new Set(seen).size >= 10_000);
    await sleep(300);
    const log = await checkLog(reader);
    assert.equal(log.count, 10_000);
    assert.equal(log.offsetBreaks, 0);
    const delivered = new Set(seen);
    for (let o = 1n; o <= 10_000n; o++) assert.ok(delivered.has(o), `offset ${o} delivered`);
    for (const e of events) assert.ok(log.ids.has(String(e.options?.messageId)));
    assert.equal(await hub2.kill('SIGTERM'), 0);
  });
});
