import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { subscription } from '@herald/client/grpc';
import { type HeraldError, INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, makeEvents, type RouterHub, startRouterHub, waitFor } from '@herald/testing';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { matchingOffsets } from '../subscriptions/test-kit.ts';

const TOTAL = 20_000;

// The hub is SIGKILLed while one gRPC subscription streams and another sleeps. The SDK client of
// the streaming one reconnects by itself once the hub is back and, within the same `for await`
// loop, yields every matching offset exactly once and in order (what the dead hub had not saved
// comes again and is skipped by offset). The sleeping one resumes right after what it acknowledged.
describe('gRPC subscriptions across a hub SIGKILL, hub process', { timeout: 88_000 }, () => {
  let fx: RouterHub;
  let reader: Store | undefined;
  let url = '';

  before(async () => {
    fx = await startRouterHub('grpckill');
    url = fx.grpc;
    reader = await openStore({ url: fx.db.url });
  });
  after(async () => {
    await reader?.close();
    await fx?.close();
  });

  test('the streaming consumer reconnects by itself and misses nothing; the sleeping one resumes', async () => {
    const errors: HeraldError[] = [];
    const live = subscription('live', 'billing:*', {
      url,
      start: 'earliest',
      maxInFlight: 200,
      reconnectMaxDelayMs: 500,
      onError: (e) => errors.push(e),
    });
    const liveGot: bigint[] = [];
    const consuming = (async () => {
      for await (const e of live) {
        assert.ok(liveGot.length === 0 || e.offset > (liveGot.at(-1) as bigint), `ascending: ${e.offset} after ${liveGot.at(-1)}`);
        liveGot.push(e.offset);
        e.ack();
      }
    })();

    const pub = await createRawPublisher(fx.vhost.url);
    // About 2,500 events/s, so the hub dies with events still coming in (they wait in herald.ingest).
    const all = makeEvents(TOTAL, { size: 120 });
    const publishing = (async () => {
      const ok: boolean[] = [];
      for (let i = 0; i < all.length; i += 250) {
        ok.push(...(await pub.publishMany(INGEST_EXCHANGE, all.slice(i, i + 250), 250)));
        await sleep(100);
      }
      return ok;
    })();

    // The sleeper takes 300 events, then sleeps.
    const sleepyGot: bigint[] = [];
    const sleepy = subscription('sleepy', 'shipping:*,crm:user.created', { url, start: 'earliest' });
    for await (const e of sleepy) {
      sleepyGot.push(e.offset);
      e.ack();
      if (sleepyGot.length === 300) break;
    }

    await waitFor('live consumed 1000', () => liveGot.length >= 1000, 30_000, 10);
    await sleep(500);
    const head = (await reader?.headOffset()) ?? 0n;
    assert.ok(head < BigInt(TOTAL), `the hub dies while events still come in (head ${head})`);
    const atKill = liveGot.length;
    assert.equal(await fx.hub.kill('SIGKILL'), 'SIGKILL');
    const killedAt = Date.now();
    await sleep(300);
    await fx.start();

    assert.ok((await publishing).every(Boolean), 'every publish confirmed');
    await pub.close();
    await waitFor('every event stored', async () => ((await reader?.headOffset()) ?? 0n) >= BigInt(TOTAL), 40_000);
    const liveExpected = await matchingOffsets(reader as Store, 'billing:*');
    const sleepyExpected = await matchingOffsets(reader as Store, 'shipping:*,crm:user.created');
    await waitFor('live caught up', () => liveGot.length >= liveExpected.length, 30_000, 20);
    const reconnectedAfter = Date.now() - killedAt;
    await live.close();
    await consuming;

    for await (const e of subscription('sleepy', 'shipping:*,crm:user.created', { url })) {
      sleepyGot.push(e.offset);
      e.ack();
      if (sleepyGot.length >= sleepyExpected.length) break;
    }

    assert.deepEqual(liveGot, liveExpected, 'live: every matching offset exactly once, in order, across the kill');
    assert.deepEqual(sleepyGot, sleepyExpected, 'sleepy: resumed right after what it acknowledged');
    assert.ok(
      errors.some((e) => e.code === 'UNAVAILABLE'),
      `the client saw the hub go: ${errors.map((e) => e.code)}`,
    );
    console.log(
      `# head ${head} of ${TOTAL} at the kill, live had ${atKill} events; ${errors.length} transient errors while the hub was down; ` +
        `live ${liveGot.length}, sleepy ${sleepyGot.length} events, caught up ${reconnectedAfter} ms after the kill`,
    );
  });
});
