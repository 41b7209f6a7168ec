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
 * consumes each event once, in order, as it receives it, then acknowledges; it drops what comes
 * again at or below what it consumed (a hub that crashed re-delivers what it had not saved).
 */
class Puller {
  consumed: bigint[] = [];
  /** The highest offset consumed. */
  processed = 0n;
  /** The highest offset the hub answered an ack for (204). */
  acked = 0n;
  /** The highest offset sent in an ack, answered or not: a hub killed mid-request may have saved it. */
  sentAck = 0n;
  redelivered = 0;
  failures = 0;
  stopped = false;
  /** While true the loop sends nothing (it waits), so the test can read the hub's state undisturbed. */
  paused = false;
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
      const fresh = offsets.filter((o) => o > this.processed);
      this.redelivered += offsets.length - fresh.length;
      if (offsets.length === 0) return 0;
      this.consumed.push(...fresh);
      this.processed = fresh.at(-1) ?? this.processed;
      // Acknowledges what this pull delivered, re-deliveries included: not beyond, so the hub
      // re-delivers every unsaved event once.
      const upTo = offsets.at(-1) as bigint;
      if (upTo > this.sentAck) this.sentAck = upTo;
      const ack = await fetch(`${this.base()}/api/v1/subscriptions/${this.name}/ack`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ offset: String(upTo) }),
      });
      if (ack.status === 503) return -1;
      assert.equal(ack.status, 204, await ack.text());
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
        if (this.paused) {
          await sleep(20);
          continue;
        }
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
  const pullers: Puller[] = [];
  after(async () => {
    // A failed assertion leaves a puller looping against a dead hub: it would keep the file alive.
    for (const p of pullers) p.stopped = true;
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
    pullers.push(busy, sleepy);

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
    await sleep(300); // the request in flight at the kill has failed by now; the rest fail until the restart
    // Held while the new hub comes up and its state is read: a pull and ack on the new hub before
    // that would move the offset read below.
    busy.paused = true;
    const busySentAtKill = busy.sentAck;
    const busyConsumedAtKill = busy.processed;

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
    assert.ok(restored <= busySentAtKill, `busy restored at ${restored}, never beyond what it sent as acknowledged (${busySentAtKill})`);
    busy.paused = false;

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
    const unsaved = busyExpected.filter((o) => o > restored && o <= busyConsumedAtKill).length;
    assert.equal(busy.redelivered, unsaved, 're-delivered: exactly what was consumed but not saved at the kill');
    console.log(
      `# head ${head} of ${TOTAL} at the kill; busy restored at ${restored} (consumed ${busyConsumedAtKill}, ack sent ${busySentAtKill}), ` +
        `${busy.redelivered} events re-delivered and dropped, ${busy.failures} failed requests while the hub was down; ` +
        `busy ${busy.consumed.length}, sleepy ${sleepy.consumed.length} events consumed`,
    );
  });
});
