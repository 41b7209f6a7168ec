import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EVENTS_EXCHANGE, Headers } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost, waitFor } from '@herald/testing';
import { connect } from 'amqplib';
import { pino } from 'pino';
import { openStore, type SqlStore } from '../store/index.ts';
import type { StoredEvent } from '../store/types.ts';
import { DISPATCHED_KEY, readCheckpoint } from './checkpoint.ts';
import { LogFlow } from './flow.ts';
import { events } from './test-kit.ts';

const logger = () => pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' });

/** A durable queue bound to herald.events; read() takes what it holds (it outlives dropped connections). */
async function collector(url: string, queue: string): Promise<{ read(): Promise<bigint[]>; close(): Promise<void> }> {
  const conn = await connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, EVENTS_EXCHANGE, '#');
  await conn.close();
  return {
    async read() {
      const c = await connect(url, { noDelay: true });
      const g = await c.createChannel();
      const out: bigint[] = [];
      for (;;) {
        const m = await g.get(queue, { noAck: true });
        if (m === false) break;
        out.push(BigInt(String(m.properties.headers?.[Headers.OFFSET])));
      }
      await c.close();
      return out;
    },
    async close() {
      const c = await connect(url, { noDelay: true });
      const g = await c.createChannel();
      await g.deleteQueue(queue);
      await c.close();
    },
  };
}

/** Offsets from..to, as bigints. */
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => BigInt(from + i));

describe('the flow from the log to herald.events (PostgreSQL, real RabbitMQ)', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let store: SqlStore;
  let flow: LogFlow | undefined;

  before(async () => {
    [db, vhost] = await Promise.all([createTestDatabase('flow'), createTestVhost('flow')]);
    store = await openStore({ url: db.url });
    await store.migrate();
    assert.ok(await store.acquireWriterLease());
  });
  after(async () => {
    await flow?.stop();
    await store?.close();
    await vhost?.delete();
    await db?.drop();
  });

  const append = async (n: number): Promise<StoredEvent[]> =>
    (await store.append(events(Array.from({ length: n }, () => ['billing', 'invoice.paid'] as [string, string])))).stored;

  test('start forwards what the log holds above the checkpoint, in order, before what is appended next', async () => {
    const seen = await collector(vhost.url, 'flow-start');
    await append(100);
    await store.setState(DISPATCHED_KEY, { offset: '40' });
    flow = new LogFlow({ amqpUrl: vhost.url, store, logger: logger() });
    await flow.start();
    assert.equal(flow.horizon(), 100n, 'start resolves once the log above the checkpoint is out');
    const next = await append(10);
    await flow.appended(next);
    assert.equal(flow.horizon(), 110n);
    assert.deepEqual(await seen.read(), range(41, 110), 'exactly what was above the checkpoint, then the new run, in order');
    await seen.close();
  });

  test('dropped connections: what was not confirmed goes again from the log; nothing missing, each run settles', async () => {
    assert.ok(flow);
    const seen = await collector(vhost.url, 'flow-drop');
    const live: bigint[] = [];
    flow.onForwarded((list) => {
      for (const e of list) live.push(e.offset);
    });
    const first = (await store.headOffset()) ?? 0n;
    const settled: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      settled.push(flow.appended(await append(50)));
      // The management API lists a connection some seconds after it opened: drop until it did.
      if (i === 10 || i === 25) await waitFor('a connection dropped', async () => (await vhost.dropConnections()) > 0, 20_000, 200);
    }
    // The drops may land after the last confirm: wait for the reconnect itself, then one more run.
    const live0 = flow;
    await waitFor('the channel reconnected', () => live0.stats().reconnects >= 1, 20_000);
    settled.push(flow.appended(await append(50)));
    await Promise.all(settled);
    const head = (await store.headOffset()) ?? 0n;
    assert.equal(flow.horizon(), head, 'the checkpoint in memory reached the head');
    const got = await seen.read();
    const want = range(Number(first) + 1, Number(head));
    assert.deepEqual(
      [...new Set(got)].sort((a, b) => (a < b ? -1 : 1)),
      want,
      'every offset arrived (at least once)',
    );
    // Between drops the order holds: each repeat goes back to the confirmed checkpoint, never skips ahead.
    let highest = first;
    for (const o of got) {
      assert.ok(o <= highest + 1n, `offset ${o} arrived before ${highest + 1n}`);
      if (o > highest) highest = o;
    }
    await waitFor('the listener saw every live event', () => new Set(live).size === want.length);
    assert.deepEqual([...new Set(live)], want, 'each reported as it went out, first sightings in order');
    await seen.close();
  });

  test('recheckHead forwards what the log holds but was never handed over (a commit whose answer was lost)', async () => {
    assert.ok(flow);
    const seen = await collector(vhost.url, 'flow-recheck');
    const unseen = await append(4); // stored, never given to appended()
    const f = flow;
    f.recheckHead();
    const head = unseen[unseen.length - 1]?.offset ?? 0n;
    await waitFor('forwarded up to the head', () => f.stats().dispatched === head);
    assert.deepEqual(
      await seen.read(),
      unseen.map((e) => e.offset),
    );
    await seen.close();
  });

  test('recheckHead asks the store again until it answers', async () => {
    assert.ok(flow);
    let armed = false;
    let failures = 0;
    // The real store, whose next head read, once armed, fails once (a store that drops one query).
    const flaky: typeof store = Object.create(store);
    flaky.headOffset = () => (armed && failures++ === 0 ? Promise.reject(new Error('connection terminated')) : store.headOffset());
    const second = new LogFlow({ amqpUrl: vhost.url, store: flaky, logger: logger() });
    await second.start();
    armed = true;
    const seen = await collector(vhost.url, 'flow-recheck-again');
    const unseen = await append(3);
    const head = unseen[unseen.length - 1]?.offset ?? 0n;
    second.recheckHead();
    await waitFor('forwarded after the failed read', () => second.stats().dispatched === head, 10_000);
    assert.ok(failures >= 2, 'the first read failed, a later one answered');
    await second.stop();
    const f = flow;
    f.recheckHead(); // the suite's flow catches up too, before the tests after this one
    await waitFor('the suite flow caught up', () => f.stats().dispatched === head);
    const got = await seen.read();
    assert.deepEqual(
      [...new Set(got)],
      unseen.map((e) => e.offset),
    );
    await seen.close();
  });

  test('suspend, resume and moveTo skip what they are told to; clear stops forwarding and clears the checkpoint', async () => {
    assert.ok(flow);
    const seen = await collector(vhost.url, 'flow-modes');
    const out = (await store.headOffset()) ?? 0n;
    await flow.suspend();
    await flow.suspend(); // a second suspend does nothing (and does not wait)
    assert.equal(flow.horizon(), out, 'while suspended, the horizon stays what was dispatched');
    await flow.appended(await append(5)); // goes nowhere, settles at once
    await flow.resume();
    const resumed = (await store.headOffset()) ?? 0n;
    assert.deepEqual(await readCheckpoint(store), resumed, 'resume goes on above what was appended while suspended');
    assert.equal(flow.horizon(), resumed);
    const between = await append(2);
    await flow.appended(between);
    await flow.suspend();
    await flow.appended(await append(5));
    const head = (await store.headOffset()) ?? 0n;
    await flow.moveTo(head);
    assert.deepEqual(await readCheckpoint(store), head, 'moveTo writes the checkpoint at once');
    const after = await append(3);
    await flow.appended(after);
    await flow.clear();
    assert.equal(await readCheckpoint(store), undefined, 'cleared');
    await flow.appended(await append(2)); // not forwarding: settles at once
    assert.deepEqual(
      await seen.read(),
      [...between, ...after].map((e) => e.offset),
      'only the runs after resume and moveTo went out',
    );
    await seen.close();
  });
});
