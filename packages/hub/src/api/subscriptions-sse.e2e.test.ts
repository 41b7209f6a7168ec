import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, makeEvents, type RawPublisher, type RouterHub, startRouterHub, waitFor } from '@herald/testing';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { openSse } from './subscriptions-test-kit.ts';

// The SSE stream of the hub process: a live tail in order, a reconnect with Last-Event-ID, and a
// graceful stop (SIGTERM) that ends open streams and long polls instead of waiting for them.
describe('SSE stream of a durable subscription, hub process', { timeout: 80_000 }, () => {
  let fx: RouterHub;
  let reader: Store | undefined;
  let pub: RawPublisher | undefined;
  let base = '';

  before(async () => {
    fx = await startRouterHub('subsse');
    base = fx.http;
    reader = await openStore({ url: fx.db.url });
    pub = await createRawPublisher(fx.vhost.url);
  });
  after(async () => {
    await pub?.close();
    await reader?.close();
    await fx?.close();
  });

  const post = (path: string, body: unknown) =>
    fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  /** Offsets in the log matching auth:*, after `after`. */
  const authOffsets = async (after: bigint) =>
    (await (reader as Store).query({ selector: 'auth:*', after, limit: 10_000 })).map((e) => String(e.offset));

  test('a live tail in order; a reconnect with Last-Event-ID resumes; SIGTERM ends open streams and polls', async () => {
    assert.equal((await post('/api/v1/subscriptions', { name: 'tail', selector: 'auth:*' })).status, 201);
    assert.equal((await post('/api/v1/subscriptions', { name: 'poller', selector: 'crm:*' })).status, 201);
    const sse = await openSse(`${base}/api/v1/subscriptions/tail/stream`);
    assert.equal(sse.status, 200);
    await waitFor('active', () => sse.comments.includes('active'), 10_000, 10);

    assert.ok((await (pub as RawPublisher).publishMany(INGEST_EXCHANGE, makeEvents(4000), 500)).every(Boolean));
    await sse.waitFor(1000);
    await waitFor('all stored', async () => ((await reader?.headOffset()) ?? 0n) >= 4000n, 20_000);
    const first = await authOffsets(0n);
    assert.equal(first.length, 1000);
    assert.deepEqual(
      sse.events.map((e) => e.id),
      first,
      'live events in offset order, each once',
    );
    assert.ok(sse.events.every((e) => e.event === e.data.type && e.data.offset === e.id));
    const lastId = sse.events.at(-1)?.id as string;
    await sse.close();

    // Published while nobody listens: the reconnect gets exactly those.
    assert.ok((await (pub as RawPublisher).publishMany(INGEST_EXCHANGE, makeEvents(400), 200)).every(Boolean));
    await waitFor('all stored', async () => ((await reader?.headOffset()) ?? 0n) >= 4400n, 20_000);
    const again = await openSse(`${base}/api/v1/subscriptions/tail/stream`, { 'last-event-id': lastId });
    await again.waitFor(100);
    assert.deepEqual(
      again.events.map((e) => e.id),
      await authOffsets(BigInt(lastId)),
    );

    // A graceful stop does not wait for an open stream or a long poll.
    const poll = fetch(`${base}/api/v1/subscriptions/poller/events?wait=30`)
      .then((r) => r.status)
      .catch(() => 'connection closed');
    await sleep(300);
    const t0 = Date.now();
    assert.equal(await fx.hub.kill('SIGTERM'), 0);
    const stopMs = Date.now() - t0;
    await again.done;
    assert.ok(
      again.comments.some((c) => c.startsWith('ended: hub stopping')),
      again.comments.join(' | '),
    );
    const polled = await poll;
    assert.ok(polled === 200 || polled === 503 || polled === 'connection closed', String(polled));
    assert.ok(stopMs < 10_000, `the hub stopped in ${stopMs} ms`);
    console.log(`# SIGTERM with an open stream and a long poll: stopped in ${stopMs} ms; the poll answered ${polled}`);
  });
});
