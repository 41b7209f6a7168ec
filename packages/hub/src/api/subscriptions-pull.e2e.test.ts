import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, makeEvents, type RouterHub, startRouterHub } from '@herald/testing';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { matchingOffsets } from '../subscriptions/test-kit.ts';

const TOTAL = 50_000;
const SELECTOR = 'billing:*,shipping:parcel.sent';

// The HTTP pull client of a durable subscription against the hub process: 50,000 events are
// published while the client pulls with random batch sizes, sometimes skips its ack, sometimes acks
// only part of a batch, stops for a while, or gives up a long poll. It ends with every matching
// offset exactly once and in order, counting what it acknowledged.
describe('HTTP pull of a durable subscription, hub process', { timeout: 88_000 }, () => {
  let fx: RouterHub;
  let reader: Store | undefined;
  let base = '';

  before(async () => {
    fx = await startRouterHub('subpull', { HERALD_LOG_LEVEL: 'info' });
    base = fx.http;
    reader = await openStore({ url: fx.db.url });
  });
  after(async () => {
    await reader?.close();
    await fx?.close();
  });

  test(`${TOTAL} events: every matching offset exactly once, in order, through pulls with random stops`, async () => {
    const created = await fetch(`${base}/api/v1/subscriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'puller', selector: SELECTOR, start: 'earliest' }),
    });
    assert.equal(created.status, 201, await created.text());

    const pub = await createRawPublisher(fx.vhost.url);
    const t0 = Date.now();
    let published = false;
    const publishing = pub.publishMany(INGEST_EXCHANGE, makeEvents(TOTAL, { size: 120 }), 500).then((ok) => {
      published = true;
      return ok;
    });

    /** What the client acknowledged, in order: the events of each batch up to its ack. */
    const consumed: bigint[] = [];
    let acked = 0n;
    let expected: bigint[] | undefined;
    const stats = { pulls: 0, events: 0, skippedAcks: 0, partialAcks: 0, stops: 0, abandoned: 0, empty: 0 };
    const deadline = Date.now() + 75_000;
    while (expected === undefined || consumed.length < expected.length) {
      assert.ok(Date.now() < deadline, `timed out with ${consumed.length} of ${expected?.length ?? '?'} consumed`);
      const roll = Math.random();
      if (roll < 0.02) {
        // A client that gives up a long poll: the hub must not keep the next pull waiting.
        stats.abandoned++;
        const ac = new AbortController();
        const r = fetch(`${base}/api/v1/subscriptions/puller/events?max=10&wait=10`, { signal: ac.signal }).catch(() => undefined);
        await sleep(Math.random() * 50);
        ac.abort();
        await r;
        continue;
      }
      const max = 1 + Math.floor(Math.random() * 1000);
      const res = await fetch(`${base}/api/v1/subscriptions/puller/events?max=${max}&wait=1`);
      assert.equal(res.status, 200);
      const { events } = (await res.json()) as { events: { offset: string; sender: string; type: string }[] };
      stats.pulls++;
      stats.events += events.length;
      if (events.length === 0) {
        stats.empty++;
        if (published && expected === undefined && ((await reader?.headOffset()) ?? 0n) >= BigInt(TOTAL))
          expected = await matchingOffsets(reader as Store, SELECTOR);
        continue;
      }
      const offsets = events.map((e) => BigInt(e.offset));
      assert.ok(events.length <= max);
      assert.ok((offsets[0] as bigint) > acked, `a pull starts after the acknowledged offset ${acked}: got ${offsets[0]}`);
      for (let i = 1; i < offsets.length; i++) assert.ok((offsets[i] as bigint) > (offsets[i - 1] as bigint), 'ascending');
      for (const e of events) assert.ok(e.sender === 'billing' || (e.sender === 'shipping' && e.type === 'parcel.sent'));
      const r = Math.random();
      if (r < 0.15) stats.skippedAcks++;
      else {
        const upTo = r < 0.3 ? Math.floor(Math.random() * offsets.length) : offsets.length - 1;
        if (upTo < offsets.length - 1) stats.partialAcks++;
        const ack = await fetch(`${base}/api/v1/subscriptions/puller/ack`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ offset: String(offsets[upTo]) }),
        });
        assert.equal(ack.status, 204);
        consumed.push(...offsets.slice(0, upTo + 1));
        acked = offsets[upTo] as bigint;
      }
      if (Math.random() < 0.05) {
        stats.stops++;
        await sleep(200 + Math.random() * 1500);
      }
    }
    assert.ok((await publishing).every(Boolean));
    await pub.close();
    const seconds = (Date.now() - t0) / 1000;

    assert.equal(consumed.length, expected.length);
    assert.deepEqual(consumed, expected, 'every matching offset exactly once, in order');
    const view = (await (await fetch(`${base}/api/v1/subscriptions/puller`)).json()) as { ackedOffset: string; lagEvents: number };
    assert.equal(view.ackedOffset, String(expected.at(-1)));
    assert.equal(view.lagEvents, 0);
    const after = await fetch(`${base}/api/v1/subscriptions/puller/events?wait=0`);
    assert.deepEqual(await after.json(), { events: [] });
    console.log(
      `# ${TOTAL} published, ${expected.length} matching consumed in ${seconds.toFixed(1)} s; ` +
        `${stats.pulls} pulls (${stats.empty} empty) delivered ${stats.events} (${stats.events - expected.length} again); ` +
        `acks skipped ${stats.skippedAcks}, partial ${stats.partialAcks}; ${stats.stops} stops, ${stats.abandoned} long polls abandoned`,
    );
  });
});
