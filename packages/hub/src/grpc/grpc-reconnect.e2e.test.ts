import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { subscription } from '@herald/client/grpc';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, makeEvents, type RouterHub, startProxy, startRouterHub, type TcpProxy, waitFor } from '@herald/testing';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { matchingOffsets } from '../subscriptions/test-kit.ts';

const TOTAL = Number(process.env.HERALD_TEST_GRPC_EVENTS ?? 50_000);
const SELECTOR = 'billing:*,shipping:parcel.sent';

// A gRPC consumer (the SDK's subscription client, through a TCP proxy) that breaks off at random
// points while 50,000 events stream in, and comes back each time: it ends with every matching
// offset exactly once, in order. Breaks rotate: the signal aborts, the loop is left (both leave
// some events yielded but not acknowledged, which the next loop gets again and counts once), or the
// network is cut under the stream (the same loop carries on once the SDK reconnected by itself).
describe('gRPC subscription with random disconnects, hub process', { timeout: 88_000 }, () => {
  let fx: RouterHub;
  let reader: Store | undefined;
  let proxy: TcpProxy;

  before(async () => {
    fx = await startRouterHub('grpcrc');
    proxy = await startProxy({ host: '127.0.0.1', port: fx.grpcPort });
    reader = await openStore({ url: fx.db.url });
  });
  after(async () => {
    await proxy?.close();
    await reader?.close();
    await fx?.close();
  });

  test(`${TOTAL} events; the consumer disconnects at random points and reconnects: every matching offset once, in order`, async () => {
    const name = 'grpc-random';
    const pub = await createRawPublisher(fx.vhost.url);
    const all = makeEvents(TOTAL, { size: 150 });
    const t0 = Date.now();
    const publishing = (async () => {
      const ok: boolean[] = [];
      for (let i = 0; i < all.length; i += 2000) {
        ok.push(...(await pub.publishMany(INGEST_EXCHANGE, all.slice(i, i + 2000), 500)));
        await sleep(20);
      }
      return ok;
    })();

    const got: bigint[] = [];
    let rounds = 0;
    let redelivered = 0;
    let expectedTotal = Number.POSITIVE_INFINITY;
    let current = new AbortController();
    void publishing.then(async () => {
      await waitFor('every event stored', async () => ((await reader?.headOffset()) ?? 0n) >= BigInt(TOTAL), 60_000);
      expectedTotal = (await matchingOffsets(reader as Store, SELECTOR)).length;
      // Everything may have been taken already: end the round that waits for more.
      if (got.length >= expectedTotal) current.abort();
    });
    let breaks = 0;
    let cuts = 0;
    while (got.length < expectedTotal) {
      rounds++;
      let stopAfter = 300 + Math.floor(Math.random() * 2700);
      let unacked = Math.floor(Math.random() * 50);
      const ac = new AbortController();
      current = ac;
      // `earliest` counts only for the first round, which creates the subscription.
      const sub = subscription(name, SELECTOR, {
        url: `127.0.0.1:${proxy.port}`,
        start: 'earliest',
        // More than the unacknowledged tail, or flow control rightly stops the stream before the break.
        maxInFlight: 50 + Math.floor(Math.random() * 450),
        reconnectMaxDelayMs: 500,
        signal: ac.signal,
      });
      const lastAcked = got.at(-1) ?? 0n;
      let n = 0;
      let pending = 0;
      for await (const e of sub) {
        if (e.offset <= lastAcked) {
          redelivered++;
          continue;
        }
        assert.ok(got.length === 0 || e.offset > (got.at(-1) as bigint), `ascending: ${e.offset} after ${got.at(-1)}`);
        got.push(e.offset);
        n++;
        if (got.length >= expectedTotal) {
          // Cumulative: acknowledges the unacknowledged ones before it too.
          e.ack();
          pending = 0;
          break;
        }
        // The last few before a break stay unacknowledged.
        if (n <= stopAfter - unacked) e.ack();
        else pending++;
        if (n >= stopAfter) {
          const kind = breaks++ % 3;
          if (kind === 0) ac.abort();
          else if (kind === 1) break;
          else {
            // The network goes: the same loop carries on once the SDK has reconnected by itself; what
            // it yielded and the hub delivers again is not yielded twice; the next ack covers the tail.
            cuts++;
            proxy.cut();
            await sleep(50 + Math.random() * 300);
            proxy.restore();
            n = 0;
            pending = 0;
            stopAfter = 300 + Math.floor(Math.random() * 2700);
            unacked = Math.floor(Math.random() * 50);
          }
        }
      }
      await sub.close();
      // What was yielded and not acknowledged comes again next round.
      got.length -= pending;
    }
    const ms = Date.now() - t0;
    assert.ok((await publishing).every(Boolean), 'every publish confirmed');
    await pub.close();
    const expected = await matchingOffsets(reader as Store, SELECTOR);
    assert.ok(breaks >= 5 && cuts >= 1, `breaks ${breaks}, network cuts ${cuts}`);
    assert.equal(new Set(got).size, got.length, 'no offset twice');
    assert.deepEqual(got, expected, 'every matching offset, in order');
    assert.equal(redelivered, 0, 'a closed subscription resumes right after what it acknowledged');
    console.log(
      `# ${TOTAL} events published, ${expected.length} matching ${SELECTOR} consumed over gRPC in ${rounds} subscription loops, ` +
        `${breaks} breaks of which ${cuts} network cuts ` +
        `(${redelivered} acknowledged events delivered again) in ${ms} ms`,
    );
  });
});
