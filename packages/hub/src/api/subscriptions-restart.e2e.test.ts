import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, makeEvents, type RouterHub, startRouterHub, waitFor } from '@herald/testing';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { matchingOffsets } from '../subscriptions/test-kit.ts';

const TOTAL = 20_000;

interface View {
  name: string;
  selector: string[];
  state: string;
  ackedOffset: string;
  consumer: string | null;
}

/**
 * An HTTP pull client that survives the hub going away: it retries on connection errors and 503,
 * drops events it already acknowledged (a hub that crashed re-delivers what it had not saved) and
 * keeps what it acknowledged, in order.
 */
class Puller {
  consumed: bigint[] = [];
  acked = 0n;
  redelivered = 0;
  failures = 0;
  stopped = false;
  private loop: Promise<void> | undefined;
  constructor(
    private readonly base: () => string,
    readonly name: string,
  ) {}

  /** One pull and ack; false when the hub did not answer. */
  async step(max: number): Promise<number> {
    try {
      const res = await fetch(`${this.base()}/api/v1/subscriptions/${this.name}/events?max=${max}&wait=1`);
      if (res.status === 503) return -1;
      assert.equal(res.status, 200, await res.clone().text());
      const { events } = (await res.json()) as { events: { offset: string }[] };
      const offsets = events.map((e) => BigInt(e.offset));
      for (let i = 1; i < offsets.length; i++) assert.ok((offsets[i] as bigint) > (offsets[i - 1] as bigint), 'ascending');
      const fresh = offsets.filter((o) => o > this.acked);
      this.redelivered += offsets.length - fresh.length;
      if (offsets.length === 0) return 0;
      const upTo = fresh.at(-1) ?? this.acked;
      const ack = await fetch(`${this.base()}/api/v1/subscriptions/${this.name}/ack`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ offset: String(upTo) }),
      });
      if (ack.status === 503) return -1;
      assert.equal(ack.status, 204, await ack.text());
      this.consumed.push(...fresh);
      this.acked = upTo;
      return fresh.length;
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      this.failures++;
      return -1;
    }
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const n = await this.step(1 + Math.floor(Math.random() * 300));
        if (n < 0) await sleep(100);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

// Durable subscriptions survive a SIGKILL of the hub: one subscription is being pulled when the
// hub dies, another sleeps with an acknowledged offset; after the restart both are there with
// their state, and the consumers get every matching offset exactly once (re-deliveries of what
// the dead hub had not saved are dropped by offset) and in order.
describe('durable subscriptions across a hub SIGKILL, hub process', { timeout: 88_000 }, () => {
  let fx: RouterHub;
  let reader: Store | undefined;
  let base = '';

  before(async () => {
    fx = await startRouterHub('subkill');
    base = fx.http;
    reader = await openStore({ url: fx.db.url });
  });
  after(async () => {
    await reader?.close();
    await fx?.close();
  });

  const create = async (name: string, selector: string) => {
    const r = await fetch(`${base}/api/v1/subscriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, selector, start: 'earliest' }),
    });
    assert.equal(r.status, 201, await r.text());
  };
  const view = async (name: string) => (await (await fetch(`${base}/api/v1/subscriptions/${name}`)).json()) as View;

  test('an active and a sleeping subscription come back with their state; nothing is missed', async () => {
    await create('busy', 'billing:*');
    await create('sleepy', 'shipping:*,crm:user.created');
    const busy = new Puller(() => base, 'busy');
    const sleepy = new Puller(() => base, 'sleepy');

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

    // The sleeper takes some events, then sleeps.
    while (sleepy.consumed.length < 300) assert.ok((await sleepy.step(100)) >= 0);
    const sleepyAcked = sleepy.acked;
    busy.start();
    await waitFor('busy consumed 1000', () => busy.consumed.length >= 1000, 30_000, 10);
    // What busy had acknowledged a second before the kill is saved by then (saves run every 200 ms).
    const busyAckedBefore = busy.acked;
    await sleep(1000);
    const head = (await reader?.headOffset()) ?? 0n;
    assert.ok(head < BigInt(TOTAL), `the hub dies while events still come in (head ${head})`);
    assert.equal(await fx.hub.kill('SIGKILL'), 'SIGKILL');
    const busyAckedAtKill = busy.acked;
    await sleep(300);

    await fx.start();
    const b = await view('busy');
    const s = await view('sleepy');
    assert.deepEqual([...s.selector].sort(), ['crm:user.created', 'shipping:*']);
    assert.equal(s.state, 'sleeping');
    assert.equal(s.consumer, null);
    assert.equal(s.ackedOffset, String(sleepyAcked), 'the sleeping subscription kept its acknowledged offset');
    assert.deepEqual(b.selector, ['billing:*']);
    const restored = BigInt(b.ackedOffset);
    assert.ok(restored >= busyAckedBefore, `busy restored at ${restored}, had acknowledged ${busyAckedBefore} a second before the kill`);
    assert.ok(restored <= busyAckedAtKill, `busy restored at ${restored}, never beyond what it acknowledged (${busyAckedAtKill})`);

    assert.ok((await publishing).every(Boolean));
    await pub.close();
    await waitFor('every event stored', async () => ((await reader?.headOffset()) ?? 0n) >= BigInt(TOTAL), 40_000);
    const busyExpected = await matchingOffsets(reader as Store, 'billing:*');
    const sleepyExpected = await matchingOffsets(reader as Store, 'shipping:*,crm:user.created');
    await waitFor('busy caught up', () => busy.consumed.length >= busyExpected.length, 30_000, 20);
    await busy.stop();
    sleepy.start();
    await waitFor('sleepy caught up', () => sleepy.consumed.length >= sleepyExpected.length, 30_000, 20);
    await sleepy.stop();

    assert.deepEqual(busy.consumed, busyExpected, 'busy: every matching offset exactly once, in order');
    assert.deepEqual(sleepy.consumed, sleepyExpected, 'sleepy: every matching offset exactly once, in order');
    const unsaved = busyExpected.filter((o) => o > restored && o <= busyAckedAtKill).length;
    assert.equal(busy.redelivered, unsaved, 're-delivered: exactly what was acknowledged but not saved at the kill');
    console.log(
      `# head ${head} of ${TOTAL} at the kill; busy restored at ${restored} (acknowledged ${busyAckedAtKill}), ` +
        `${busy.redelivered} events re-delivered and dropped, ${busy.failures} failed requests while the hub was down; ` +
        `busy ${busy.consumed.length}, sleepy ${sleepy.consumed.length} events consumed`,
    );
  });
});
