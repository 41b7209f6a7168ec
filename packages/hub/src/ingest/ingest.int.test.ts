import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEAD_QUEUE, Headers, INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  makeEvents,
  type RawPublisher,
  startProxy,
  type TcpProxy,
  type TestDatabase,
  type TestVhost,
  waitFor as waitUntil,
} from '@herald/testing';
import { connect } from 'amqplib';
import { pino } from 'pino';
import { normalizeConfig } from '../config/index.ts';
import { createHub, type Hub } from '../hub.ts';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { checkLog } from './check-log.ts';

const waitFor = (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 60_000) => waitUntil(what, fn, timeoutMs, 100);

/** Drops the vhost's connections until the hub has reconnected (the management API lists a new connection only after a few seconds). */
async function dropUntilReconnected(hub: Hub, vhost: TestVhost): Promise<void> {
  const reconnects = hub.stats()?.reconnects ?? 0;
  await waitFor('the hub to reconnect', async () => {
    await vhost.dropConnections();
    await sleep(500);
    return (hub.stats()?.reconnects ?? 0) > reconnects;
  });
}

describe('ingest against real RabbitMQ and PostgreSQL (archive mode, in-process hub)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let proxy: TcpProxy;
  let hub: Hub;
  let reader: Store;
  let pub: RawPublisher;

  before(async () => {
    vhost = await createTestVhost('ingest');
    db = await createTestDatabase('ingest');
    const target = new URL(db.url);
    proxy = await startProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const viaProxy = new URL(db.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const config = normalizeConfig(
      { amqpUrl: vhost.url, databaseUrl: viaProxy.href, mode: 'archive', httpPort: 0, grpcPort: 0, maxEventBytes: 4096 },
      {},
    );
    hub = createHub(config, { logger: pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' }) });
    await hub.start();
    reader = await openStore({ url: db.url });
    pub = await createRawPublisher(vhost.url);
  });

  after(async () => {
    await pub?.close();
    await hub?.stop();
    await reader?.close();
    await proxy?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('malformed messages become dead letters with a reason, in the table and in queue herald.dead; good events still flow', async () => {
    const base = (await reader.headOffset()) ?? 0n;
    const bad = [
      { routingKey: 'nodot', content: Buffer.from('{}'), why: /routing key/ },
      { routingKey: 'billing.invoice.paid', content: Buffer.from('{}'), options: { appId: 'shipping' }, why: /app_id/ },
      { routingKey: 'billing.invoice.paid', content: Buffer.from('{}'), options: { type: 'invoice.voided' }, why: /type property/ },
      { routingKey: 'billing.invoice.paid', content: Buffer.alloc(5000, 97), why: /exceeds the limit/ },
      { routingKey: 'billing.invoice.paid', content: Buffer.from('{}'), options: { messageId: 'not-a-uuid' }, why: /not a UUID/ },
      { routingKey: 'bill ing.x', content: Buffer.from('{}'), why: /sender/ },
    ];
    const good = makeEvents(50);
    const all = [...good.slice(0, 25), ...bad, ...good.slice(25)];
    const confirmed = await pub.publishMany(INGEST_EXCHANGE, all, 100);
    assert.ok(confirmed.every(Boolean));

    await waitFor('good events stored', async () => (await reader.headOffset()) >= base + 50n);
    await waitFor('dead letters stored', async () => (await reader.listDeadLetters(100)).length >= bad.length);
    const letters = await reader.listDeadLetters(100);
    assert.equal(letters.length, bad.length);
    for (const b of bad) {
      assert.ok(
        letters.some((l) => b.why.test(l.reason) && l.routingKey === b.routingKey),
        `a dead letter for ${b.routingKey} matching ${b.why}; got ${letters.map((l) => l.reason).join(' | ')}`,
      );
    }
    for (const l of letters) {
      assert.ok(l.code.length > 0);
      assert.equal(l.exchange, INGEST_EXCHANGE);
    }
    const oversized = letters.find((l) => /exceeds/.test(l.reason));
    assert.equal(oversized?.body.length, 5000, 'the body is kept byte for byte');

    const conn = await connect(vhost.url);
    try {
      const ch = await conn.createChannel();
      const seen: string[] = [];
      for (let i = 0; i < bad.length; i++) {
        const m = await ch.get(DEAD_QUEUE, { noAck: true });
        assert.ok(m, `dead letter ${i} in queue ${DEAD_QUEUE}`);
        const h = m.properties.headers ?? {};
        assert.equal(typeof h[Headers.DEAD_REASON], 'string');
        assert.equal(typeof h[Headers.DEAD_CODE], 'string');
        assert.equal(String(h[Headers.ORIGINAL_EXCHANGE]), INGEST_EXCHANGE);
        seen.push(String(h[Headers.ORIGINAL_ROUTING_KEY]));
      }
      assert.deepEqual(seen.sort(), bad.map((b) => b.routingKey).sort());
    } finally {
      await conn.close();
    }

    const stats = hub.stats();
    assert.equal(hub.state(), 'running');
    assert.ok(stats && stats.dead === bad.length);
    const log = await checkLog(reader);
    assert.equal(log.offsetBreaks, 0);
    for (const g of good) assert.ok(log.ids.has(String(g.options?.messageId)));
  });

  test('database outage: ingest pauses while the line is cut and resumes by itself; nothing confirmed is lost', async () => {
    const before = await checkLog(reader);
    const events = makeEvents(20_000, { size: 300 });
    const publishing = pub.publishMany(INGEST_EXCHANGE, events, 1000);
    await sleep(300);
    proxy.cut();
    await sleep(2500);
    // The writer lease lives on a database session: a cut loses it, so the hub waits as a standby.
    assert.notEqual(hub.state(), 'stopped', 'the hub keeps running');
    proxy.restore();
    await waitFor('the hub running again', async () => hub.state() === 'running');
    const confirmed = await publishing;
    assert.ok(confirmed.every(Boolean));
    const expected = before.count + events.length;
    await waitFor('every event stored after the outage', async () => (await reader.headOffset()) >= BigInt(expected), 90_000);
    const log = await checkLog(reader);
    assert.equal(log.count, expected);
    assert.equal(log.ids.size, expected, 'one row per id');
    assert.equal(log.offsetBreaks, 0, 'offsets dense');
    for (const e of events) assert.ok(log.ids.has(String(e.options?.messageId)));
  });

  test('RabbitMQ drops the connection: the hub reconnects, redelivered messages are stored once', async () => {
    const before = await checkLog(reader);
    const events = makeEvents(10_000, { size: 300 });
    const first = await pub.publishMany(INGEST_EXCHANGE, events.slice(0, 5000), 1000);
    await dropUntilReconnected(hub, vhost);
    await pub.close();
    pub = await createRawPublisher(vhost.url);
    const lost = events.slice(0, 5000).filter((_, i) => !first[i]);
    const rest = [...lost, ...events.slice(5000)];
    assert.ok((await pub.publishMany(INGEST_EXCHANGE, rest, 1000)).every(Boolean));
    const expected = before.count + events.length;
    await waitFor('every event stored after the reconnect', async () => (await reader.headOffset()) >= BigInt(expected));
    await sleep(300);
    const log = await checkLog(reader);
    assert.equal(log.count, expected);
    assert.equal(log.ids.size, expected);
    assert.equal(log.offsetBreaks, 0);
  });
});

describe('switching modes never loses what sits in the other mode’s queue', () => {
  let vhost: TestVhost;
  let db: TestDatabase;

  before(async () => {
    vhost = await createTestVhost('modes');
    db = await createTestDatabase('modes');
  });
  after(async () => {
    await vhost?.delete();
    await db?.drop();
  });

  const run = async (mode: 'router' | 'archive') => {
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode, httpPort: 0, grpcPort: 0 }, {});
    const hub = createHub(config, { logger: pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' }) });
    await hub.start();
    return hub;
  };
  const names = async () => (await vhost.queues()).map((q) => q.name);

  test('router → archive → router, with messages published while the hub is down', async () => {
    const reader = await openStore({ url: db.url });
    const pub = await createRawPublisher(vhost.url);
    try {
      await (await run('router')).stop();
      const a = makeEvents(1000);
      assert.ok((await pub.publishMany(INGEST_EXCHANGE, a, 500)).every(Boolean)); // waits in queue herald.ingest

      let hub = await run('archive'); // drains herald.ingest (stored and forwarded), deletes it
      await waitFor('the router queue drained', async () => (await reader.headOffset()) >= 1000n);
      const b = makeEvents(1000);
      assert.ok((await pub.publishMany(INGEST_EXCHANGE, b, 500)).every(Boolean));
      await waitFor('archive events stored', async () => (await reader.headOffset()) >= 2000n);
      await hub.stop();
      await waitFor('herald.ingest deleted', async () => !(await names()).includes('herald.ingest'), 15_000);

      const c = makeEvents(500);
      assert.ok((await pub.publishMany(INGEST_EXCHANGE, c, 500)).every(Boolean)); // waits in queue herald.store
      hub = await run('router'); // drains herald.store into the log, deletes it
      await waitFor('the archive queue drained', async () => (await reader.headOffset()) >= 2500n);
      const d = makeEvents(500);
      assert.ok((await pub.publishMany(INGEST_EXCHANGE, d, 500)).every(Boolean));
      await waitFor('router events stored', async () => (await reader.headOffset()) >= 3000n);
      await hub.stop();

      const log = await checkLog(reader);
      assert.equal(log.count, 3000);
      assert.equal(log.offsetBreaks, 0);
      for (const m of [...a, ...b, ...c, ...d]) assert.ok(log.ids.has(String(m.options?.messageId)));
    } finally {
      await pub.close();
      await reader.close();
    }
  });
});

describe('router mode: coalesced acknowledgements', () => {
  let vhost: TestVhost;
  let db: TestDatabase;

  before(async () => {
    vhost = await createTestVhost('acks');
    db = await createTestDatabase('acks');
  });
  after(async () => {
    await vhost?.delete();
    await db?.drop();
  });

  test('events trickling in one at a time are acknowledged while the hub runs: a dropped connection redelivers none of them', async () => {
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode: 'router', httpPort: 0, grpcPort: 0 }, {});
    const hub = createHub(config, { logger: pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' }) });
    await hub.start();
    const reader = await openStore({ url: db.url });
    const pub = await createRawPublisher(vhost.url);
    try {
      // One at a time, each stored before the next is sent: every batch is a single event, and no
      // batch is big enough to send its ack at once, so only the coalescing window acknowledges them.
      const events = makeEvents(30);
      for (const [i, event] of events.entries()) {
        assert.ok(await pub.publish(INGEST_EXCHANGE, event));
        await waitFor(`event ${i + 1} stored`, async () => (await reader.headOffset()) >= BigInt(i + 1));
      }
      await waitFor('every event forwarded', () => hub.stats()?.dispatched === '30');
      await sleep(200); // several coalescing windows
      await dropUntilReconnected(hub, vhost);
      // A message still unacknowledged at the drop would come back now and count as a duplicate.
      await sleep(500);
      assert.equal(hub.stats()?.duplicates, 0);
      assert.equal(hub.stats()?.stored, 30);
      const log = await checkLog(reader);
      assert.equal(log.count, 30);
      assert.equal(log.offsetBreaks, 0);
    } finally {
      await pub.close();
      await hub.stop();
      await reader.close();
    }
  });
});
