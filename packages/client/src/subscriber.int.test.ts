import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DEAD_QUEUE, type DeliveredEvent, Headers, INGEST_EXCHANGE } from '@herald/core';
import { createTestVhost, type TestVhost } from '@herald/testing';
import { type Channel, type ChannelModel, connect, type GetMessage } from 'amqplib';
import { createPublisher, createSubscriber, declareTopology, type Publisher, subscribe } from './index.ts';

let vhost: TestVhost;
let conn: ChannelModel;
let ch: Channel;
let pub: Publisher;

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Takes the dead letters with this routing key off herald.dead. */
async function deadLetters(routingKey: string, expect: number): Promise<GetMessage[]> {
  const out: GetMessage[] = [];
  const others: GetMessage[] = [];
  await until(`${expect} dead letters for ${routingKey}`, async () => {
    for (;;) {
      const m = await ch.get(DEAD_QUEUE, { noAck: false });
      if (!m) break;
      if (m.fields.routingKey === routingKey) {
        ch.ack(m);
        out.push(m);
      } else others.push(m);
    }
    for (const m of others.splice(0)) ch.nack(m, false, true);
    return out.length >= expect;
  });
  return out;
}

before(async () => {
  vhost = await createTestVhost('client-sub');
  await declareTopology({ url: vhost.url, mode: 'archive' });
  conn = await connect(vhost.url);
  ch = await conn.createChannel();
  pub = createPublisher({ url: vhost.url, sender: 'billing' });
});

after(async () => {
  await pub?.close();
  await conn?.close().catch(() => undefined);
  await vhost?.delete();
});

describe('subscriber', () => {
  test('receives what its selector matches, in order, as DeliveredEvents', async () => {
    const got: DeliveredEvent[] = [];
    const sub = createSubscriber({ url: vhost.url, selector: 'billing:order.*' }, (e) => {
      got.push(e);
    });
    try {
      await sub.queue;
      for (let i = 0; i < 200; i++) void pub.publish(i % 2 ? 'order.placed' : 'order.other.skipped', { i });
      await pub.flush();
      await until('100 events', () => got.length >= 100);
      assert.deepEqual(
        got.map((e) => JSON.parse(e.data.toString()).i),
        Array.from({ length: 100 }, (_, k) => 2 * k + 1),
      );
      assert.ok(got.every((e) => e.sender === 'billing' && e.type === 'order.placed' && e.contentType === 'application/json'));
    } finally {
      await sub.close();
    }
  });

  test('a selector with two # is bound wider (RabbitMQ backtracks over several #): what it does not match is acked unseen', async () => {
    const got: string[] = [];
    const sub = createSubscriber({ url: vhost.url, selector: 'billing:a.#.b.#.c' }, (e) => {
      got.push(e.type);
    });
    try {
      await sub.queue;
      for (const type of ['a.x', 'a.b.c', 'a.b.x', 'a.q.b.r.c', 'a.c']) void pub.publish(type, {});
      await pub.flush();
      await until('2 events', () => got.length >= 2);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(got, ['a.b.c', 'a.q.b.r.c']);
    } finally {
      await sub.close();
    }
  });

  test('a failing handler is retried after the delay, then dead-lettered with its headers and acked', async () => {
    const attempts: number[] = [];
    const sub = createSubscriber(
      { url: vhost.url, selector: 'billing:fail.always', maxAttempts: 3, retryDelayMs: 50, queue: 'fails' },
      () => {
        attempts.push(Date.now());
        throw new Error('handler exploded');
      },
    );
    try {
      await sub.queue;
      const { id } = await pub.publish('fail.always', { n: 1 });
      const [dead] = await deadLetters('billing.fail.always', 1);
      assert.ok(dead);
      assert.equal(attempts.length, 3);
      assert.ok((attempts[2] as number) - (attempts[0] as number) >= 100, 'retries wait retryDelayMs');
      const h = dead.properties.headers ?? {};
      assert.equal(dead.properties.messageId, id);
      assert.equal(h[Headers.DEAD_REASON], 'handler exploded');
      assert.equal(h[Headers.DEAD_CODE], 'HANDLER_FAILED');
      assert.equal(Number(h[Headers.ATTEMPTS]), 3);
      assert.equal(h[Headers.ORIGINAL_EXCHANGE], INGEST_EXCHANGE);
      assert.equal(h[Headers.ORIGINAL_ROUTING_KEY], 'billing.fail.always');
      // Acked, not redelivered: the queue is empty and the handler is not called again.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(attempts.length, 3);
      assert.equal((await ch.checkQueue('fails')).messageCount, 0);
    } finally {
      await sub.close();
    }
  });

  test('retries keep the order: later events wait for the failing one', async () => {
    const seen: string[] = [];
    let failuresLeft = 2;
    const sub = createSubscriber({ url: vhost.url, selector: 'billing:seq.*', retryDelayMs: 30 }, (e) => {
      const n = JSON.parse(e.data.toString()).n as number;
      seen.push(`${n}`);
      if (n === 2 && failuresLeft-- > 0) throw new Error('not yet');
    });
    try {
      await sub.queue;
      for (let n = 1; n <= 5; n++) void pub.publish('seq.step', { n });
      await until('5 events handled', () => seen.filter((s) => s !== '2').length === 4 && seen.includes('5'));
      assert.deepEqual(seen, ['1', '2', '2', '2', '3', '4', '5']);
    } finally {
      await sub.close();
    }
  });

  test('an invalid envelope goes to the dead letters with the reason', async () => {
    const handled: DeliveredEvent[] = [];
    const sub = createSubscriber({ url: vhost.url, selector: 'billing:raw.*' }, (e) => {
      handled.push(e);
    });
    try {
      await sub.queue;
      const raw = await conn.createConfirmChannel();
      raw.publish(INGEST_EXCHANGE, 'billing.raw.bad', Buffer.from('{}'), { appId: 'shipping', persistent: true });
      raw.publish(INGEST_EXCHANGE, 'billing.raw.good', Buffer.from('{}'), { persistent: true });
      await raw.waitForConfirms();
      await raw.close();
      const [dead] = await deadLetters('billing.raw.bad', 1);
      const h = dead?.properties.headers ?? {};
      assert.equal(h[Headers.DEAD_CODE], 'INVALID_EVENT');
      assert.match(String(h[Headers.DEAD_REASON]), /app_id "shipping" disagrees/);
      assert.equal(Number(h[Headers.ATTEMPTS]), 0);
      await until('the good one', () => handled.length === 1);
      assert.equal(handled[0]?.type, 'raw.good');
    } finally {
      await sub.close();
    }
  });

  test('close waits for the handler in flight and acks it; the rest stays queued', async () => {
    const started = deferred();
    const release = deferred();
    let finished = 0;
    let calls = 0;
    const sub = createSubscriber({ url: vhost.url, selector: 'billing:slow.*', queue: 'slow' }, async () => {
      calls++;
      started.resolve();
      await release.promise;
      finished++;
    });
    await sub.queue;
    for (let i = 0; i < 3; i++) void pub.publish('slow.job', { i });
    await pub.flush();
    await started.promise;
    const closing = sub.close();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(finished, 0, 'close does not cut the handler short');
    release.resolve();
    await closing;
    assert.equal(finished, 1);
    assert.equal(calls, 1);
    await until('2 left in the queue', async () => (await ch.checkQueue('slow')).messageCount === 2);
  });

  test('concurrency runs handlers in parallel up to the limit', async () => {
    let running = 0;
    let peak = 0;
    let done = 0;
    const sub = createSubscriber({ url: vhost.url, selector: 'billing:par.*', concurrency: 4 }, async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      done++;
    });
    try {
      await sub.queue;
      for (let i = 0; i < 20; i++) void pub.publish('par.job', { i });
      await until('20 done', () => done === 20);
      assert.equal(peak, 4);
    } finally {
      await sub.close();
    }
  });
});

describe('subscriber: signal and await using', () => {
  test('an aborted signal closes the subscriber: its consumer leaves the queue', async () => {
    const controller = new AbortController();
    const got: unknown[] = [];
    const sub = createSubscriber(
      { url: vhost.url, selector: 'billing:aborted.*', queue: 'aborted-sub', signal: controller.signal },
      (e) => {
        got.push(e.payload());
      },
    );
    await sub.queue;
    await pub.publish('aborted.one', { n: 1 });
    await until('the first event', () => got.length === 1);
    assert.deepEqual(got, [{ n: 1 }]);
    controller.abort();
    await until('no consumer on the queue', async () => (await ch.checkQueue('aborted-sub')).consumerCount === 0);
    await sub.close();
  });

  test('await using closes the subscriber at the end of the block', async () => {
    {
      await using sub = createSubscriber({ url: vhost.url, selector: 'billing:using.*', queue: 'using-sub' }, () => undefined);
      await sub.queue;
      assert.equal((await ch.checkQueue('using-sub')).consumerCount, 1);
    }
    assert.equal((await ch.checkQueue('using-sub')).consumerCount, 0);
  });
});

describe('subscribe (async iterator)', () => {
  test('yields events in order; nack retries with attempt + 1; leaving the loop closes', async () => {
    const sub = subscribe({ url: vhost.url, selector: 'billing:iter.*', retryDelayMs: 20, queue: 'iter' });
    await sub.queue;
    for (let n = 0; n < 5; n++) void pub.publish('iter.step', { n });
    const seen: string[] = [];
    for await (const e of sub) {
      const n = JSON.parse(e.data.toString()).n as number;
      seen.push(`${n}@${e.attempt}`);
      if (n === 1 && e.attempt === 1) e.nack(new Error('again'));
      else if (n === 3) e.ack();
      // n = 0, 2 are acked by asking for the next one.
      if (n === 4) break;
    }
    assert.deepEqual(seen, ['0@1', '1@1', '1@2', '2@1', '3@1', '4@1']);
    // The last one was not settled when the loop ended: it stays queued for the next consumer.
    await until('1 left in the queue', async () => (await ch.checkQueue('iter')).messageCount === 1);
  });

  test('aborting the signal ends the loop; payload() gives the data back as published', async () => {
    const controller = new AbortController();
    const sub = subscribe<{ 'signal.step': { n: number } }>({ url: vhost.url, selector: 'billing:signal.*', signal: controller.signal });
    await sub.queue;
    await pub.publish('signal.step', { n: 7 });
    const seen: number[] = [];
    for await (const e of sub) {
      seen.push(e.payload().n);
      controller.abort();
    }
    assert.deepEqual(seen, [7]);
  });

  test('close() ends a waiting loop', async () => {
    const sub = subscribe({ url: vhost.url, selector: 'billing:nothing.here' });
    await sub.queue;
    const loop = (async () => {
      let n = 0;
      for await (const _ of sub) n++;
      return n;
    })();
    await sub.close();
    assert.equal(await loop, 0);
  });
});
