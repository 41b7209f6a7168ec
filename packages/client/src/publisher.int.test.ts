import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EVENTS_EXCHANGE, Headers, HeraldError, hasCode, INGEST_EXCHANGE } from '@herald/core';
import { createTestVhost, startProxy, type TestVhost } from '@herald/testing';
import { type Channel, type ChannelModel, type ConsumeMessage, connect } from 'amqplib';
import { createPublisher, declareTopology } from './index.ts';

let vhost: TestVhost;
let conn: ChannelModel;
let ch: Channel;

/** A plain amqplib queue on herald.events, to see exactly what went over the wire. */
async function rawQueue(bindingKey: string): Promise<{ next(): Promise<ConsumeMessage>; count(): number }> {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, EVENTS_EXCHANGE, bindingKey);
  const got: ConsumeMessage[] = [];
  const waiters: ((m: ConsumeMessage) => void)[] = [];
  await ch.consume(
    queue,
    (m) => {
      if (!m) return;
      const w = waiters.shift();
      if (w) w(m);
      else got.push(m);
    },
    { noAck: true },
  );
  let seen = 0;
  return {
    next: () => {
      seen++;
      const m = got.shift();
      return m ? Promise.resolve(m) : new Promise((resolve) => waiters.push(resolve));
    },
    count: () => seen + got.length,
  };
}

function rejectsWith(code: string, mentions: string) {
  return (err: unknown) => {
    assert.ok(err instanceof HeraldError, `expected a HeraldError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.ok(err.message.includes(mentions), `${JSON.stringify(err.message)} should mention ${JSON.stringify(mentions)}`);
    return true;
  };
}

before(async () => {
  vhost = await createTestVhost('client-pub');
  await declareTopology({ url: vhost.url, mode: 'archive' });
  conn = await connect(vhost.url);
  ch = await conn.createChannel();
});

after(async () => {
  await conn?.close().catch(() => undefined);
  await vhost?.delete();
});

describe('publisher', () => {
  test('publish resolves on confirm and the event carries every property of the wire contract', async () => {
    const q = await rawQueue('billing.invoice.#');
    const pub = createPublisher({ url: vhost.url, sender: 'billing' });
    try {
      const time = 1_700_000_000_123;
      const receipt = await pub.publish(
        'invoice.paid',
        { amount: 42 },
        { time, correlationId: 'corr-1', causationId: 'cause-1', subject: 'inv-7', headers: { tenant: 'acme' } },
      );
      const m = await q.next();
      // Archive mode's exchange-to-exchange binding keeps the exchange it was published to.
      assert.equal(m.fields.exchange, INGEST_EXCHANGE);
      assert.equal(m.fields.routingKey, 'billing.invoice.paid');
      assert.equal(m.properties.messageId, receipt.id);
      assert.equal(m.properties.appId, 'billing');
      assert.equal(m.properties.type, 'invoice.paid');
      assert.equal(m.properties.timestamp, 1_700_000_000);
      assert.equal(m.properties.contentType, 'application/json');
      assert.equal(m.properties.correlationId, 'corr-1');
      assert.equal(m.properties.userId, 'guest');
      assert.equal(m.properties.deliveryMode, 2);
      assert.equal(Number(m.properties.headers?.[Headers.TIME]), time);
      assert.equal(m.properties.headers?.[Headers.SUBJECT], 'inv-7');
      assert.equal(m.properties.headers?.[Headers.CAUSATION_ID], 'cause-1');
      assert.equal(m.properties.headers?.tenant, 'acme');
      assert.deepEqual(JSON.parse(m.content.toString()), { amount: 42 });
      assert.equal(pub.pending, 0);
    } finally {
      await pub.close();
    }
  });

  test('setUserId: false leaves user_id out; a Buffer goes byte for byte', async () => {
    const q = await rawQueue('crm.#');
    const pub = createPublisher({ url: vhost.url, sender: 'crm', setUserId: false });
    try {
      const bytes = Buffer.from([0, 1, 254, 255]);
      await pub.publish('blob.saved', bytes);
      const m = await q.next();
      assert.equal(m.properties.userId, undefined);
      assert.equal(m.properties.contentType, 'application/octet-stream');
      assert.deepEqual(m.content, bytes);
    } finally {
      await pub.close();
    }
  });

  test('bad input is rejected with a clear error and nothing is sent', async () => {
    const q = await rawQueue('shipping.#');
    const pub = createPublisher({ url: vhost.url, sender: 'shipping', maxEventBytes: 100 });
    try {
      await assert.rejects(pub.publish('parcel..sent'), rejectsWith('INVALID_TYPE', 'segment ""'));
      await assert.rejects(pub.publish('parcel.sent', 'x'.repeat(101)), rejectsWith('EVENT_TOO_LARGE', '101 bytes'));
      await assert.rejects(pub.publish('parcel.sent', {}, { id: 'not-a-uuid' }), rejectsWith('INVALID_EVENT', 'not-a-uuid'));
      await pub.publish('parcel.sent', { ok: true });
      const m = await q.next();
      assert.equal(m.fields.routingKey, 'shipping.parcel.sent');
      assert.equal(q.count(), 1);
      assert.throws(() => createPublisher({ url: vhost.url, sender: 'bad sender' }), rejectsWith('INVALID_SENDER', 'bad sender'));
    } finally {
      await pub.close();
    }
  });

  test('a nack rejects that publish only, with PUBLISH_FAILED naming its id; the others still resolve', async () => {
    // A queue that holds nothing and refuses what overflows: RabbitMQ nacks every publish routed to it.
    const { queue } = await ch.assertQueue('', { exclusive: true, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    await ch.bindQueue(queue, INGEST_EXCHANGE, 'refusing.bad.#');
    const q = await rawQueue('refusing.good.#');
    const pub = createPublisher({ url: vhost.url, sender: 'refusing' });
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 200 }, (_, i) => pub.publish(i % 3 === 1 ? 'bad.x' : 'good.x', { i })),
      );
      for (const [i, o] of outcomes.entries()) {
        if (i % 3 !== 1) {
          assert.equal(o.status, 'fulfilled', `publish ${i}`);
          continue;
        }
        assert.equal(o.status, 'rejected', `publish ${i}`);
        const err = (o as PromiseRejectedResult).reason as HeraldError;
        rejectsWith('PUBLISH_FAILED', '(nack)')(err);
        assert.match(String(err.details?.id), /^[0-9a-f-]{36}$/);
        assert.ok(err.message.includes(String(err.details?.id)));
      }
      const good: number[] = [];
      for (let n = 0; n < 133; n++) good.push(JSON.parse((await q.next()).content.toString()).i);
      assert.deepEqual(
        good,
        Array.from({ length: 200 }, (_, i) => i).filter((i) => i % 3 !== 1),
      );
      assert.equal(pub.pending, 0);
    } finally {
      await pub.close();
    }
  });

  test('publishing after close rejects with CLOSED; close flushes first', async () => {
    const pub = createPublisher({ url: vhost.url, sender: 'billing' });
    const inFlight = Array.from({ length: 500 }, (_, i) => pub.publish('x.y', { i }));
    await pub.close();
    assert.equal((await Promise.allSettled(inFlight)).filter((r) => r.status === 'fulfilled').length, 500);
    await assert.rejects(pub.publish('x.y'), rejectsWith('CLOSED', 'closed'));
  });

  test('a missing herald.ingest is a PUBLISH_FAILED that says what to do', async () => {
    const bare = await createTestVhost('client-bare');
    const errors: Error[] = [];
    const pub = createPublisher({ url: bare.url, sender: 'billing', onError: (e) => errors.push(e) });
    try {
      await assert.rejects(
        pub.publish('x.y'),
        rejectsWith('PUBLISH_FAILED', 'exchange herald.ingest does not exist: run `herald topology`'),
      );
      assert.ok(errors.some((e) => hasCode(e, 'PUBLISH_FAILED')));
      // Once the exchange exists, the next attach finds it (declareTopology: true does it itself).
      const declaring = createPublisher({ url: bare.url, sender: 'billing', declareTopology: true });
      await declaring.publish('x.y');
      await declaring.close();
    } finally {
      await pub.close();
      await bare.delete();
    }
  });

  test('while the broker is unreachable, publishes wait, pending stays within maxPending, and all are confirmed after', async () => {
    const target = new URL(vhost.url);
    const proxy = await startProxy({ host: target.hostname, port: Number(target.port || 5672) });
    proxy.cut();
    const url = new URL(vhost.url);
    url.host = `127.0.0.1:${proxy.port}`;
    const q = await rawQueue('outage.#');
    const pub = createPublisher({ url: url.href, sender: 'outage', maxPending: 50, reconnectMaxDelayMs: 200 });
    try {
      let maxSeen = 0;
      const all = Array.from({ length: 300 }, (_, i) => {
        const p = pub.publish('tick', { i });
        maxSeen = Math.max(maxSeen, pub.pending);
        return p;
      });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(pub.pending, 50);
      assert.equal(maxSeen, 50);
      proxy.restore();
      const receipts = await Promise.all(all);
      assert.equal(new Set(receipts.map((r) => r.id)).size, 300);
      const order: number[] = [];
      for (let i = 0; i < 300; i++) order.push(JSON.parse((await q.next()).content.toString()).i);
      assert.deepEqual(
        order,
        Array.from({ length: 300 }, (_, i) => i),
      );
    } finally {
      await pub.close();
      await proxy.close();
    }
  });

  test('AbortSignal: an aborted publish rejects with ABORTED; one not yet sent is never sent', async () => {
    const target = new URL(vhost.url);
    const proxy = await startProxy({ host: target.hostname, port: Number(target.port || 5672) });
    proxy.cut();
    const url = new URL(vhost.url);
    url.host = `127.0.0.1:${proxy.port}`;
    const q = await rawQueue('abort.#');
    const pub = createPublisher({ url: url.href, sender: 'abort', maxPending: 2, reconnectMaxDelayMs: 200 });
    try {
      // Already aborted: refused before anything is queued.
      await assert.rejects(pub.publish('early', {}, { signal: AbortSignal.abort() }), rejectsWith('ABORTED', 'publish aborted'));
      // Buffered during the outage (admitted) and waiting for room (blocked), then aborted.
      const first = pub.publish('kept', { n: 0 });
      const buffered = new AbortController();
      const inBuffer = pub.publish('dropped', { n: 1 }, { signal: buffered.signal });
      const waiting = new AbortController();
      const blocked = pub.publish('dropped', { n: 2 }, { signal: waiting.signal });
      const last = pub.publish('kept', { n: 3 });
      assert.equal(pub.pending, 2);
      buffered.abort(new Error('user gave up'));
      waiting.abort();
      await assert.rejects(inBuffer, (err: unknown) => {
        rejectsWith('ABORTED', 'aborted')(err);
        assert.equal((err as HeraldError).cause instanceof Error && (err as HeraldError).cause?.toString(), 'Error: user gave up');
        assert.match(String((err as HeraldError).details?.id), /^[0-9a-f-]{36}$/);
        return true;
      });
      await assert.rejects(blocked, rejectsWith('ABORTED', 'aborted'));
      proxy.restore();
      await Promise.all([first, last]);
      // Nothing aborted went out: the two kept ones arrive, in order, and nothing between them.
      const a = await q.next();
      const b = await q.next();
      assert.deepEqual([a.properties.type, b.properties.type], ['kept', 'kept']);
      assert.deepEqual([JSON.parse(a.content.toString()).n, JSON.parse(b.content.toString()).n], [0, 3]);
      // A later confirmed publish proves the queue held no aborted event behind them.
      await pub.publish('kept', { n: 4 });
      assert.equal(JSON.parse((await q.next()).content.toString()).n, 4);
      assert.equal(pub.pending, 0);
    } finally {
      await pub.close();
      await proxy.close();
    }
  });

  test('await using closes the publisher (flushing first)', async () => {
    const q = await rawQueue('disposed.#');
    {
      await using pub = createPublisher({ url: vhost.url, sender: 'disposed' });
      void pub.publish('bye', { n: 1 });
    }
    assert.equal(JSON.parse((await q.next()).content.toString()).n, 1);
  });

  test('a publish not confirmed in time rejects with TIMEOUT', async () => {
    const pub = createPublisher({ url: 'amqp://guest:guest@127.0.0.1:1/', sender: 'billing', confirmTimeoutMs: 200 });
    const started = Date.now();
    await assert.rejects(pub.publish('x.y'), rejectsWith('TIMEOUT', 'not confirmed within 200 ms'));
    assert.ok(Date.now() - started < 2000);
    await pub.close();
  });
});
