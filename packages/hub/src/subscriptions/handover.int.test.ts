import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseSelector } from '@herald/core';
import { connect } from 'amqplib';
import { createRig, offsetsOf, type Rig } from './test-kit.ts';
import type { DeliveredEvent } from './types.ts';

/** A small deterministic PRNG, so a failing run can be repeated with its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function assertIncreasing(list: readonly number[], what: string): void {
  for (let i = 1; i < list.length; i++)
    if ((list[i] as number) <= (list[i - 1] as number)) assert.fail(`${what}: offset ${list[i]} after ${list[i - 1]} (index ${i})`);
}

describe('subscription handover under load (postgres store + RabbitMQ)', { timeout: 120_000 }, () => {
  let rig: Rig;

  before(async () => {
    rig = await createRig('postgres', 'handover');
  });
  after(async () => {
    await rig?.close();
  });

  /** Streams `total` events (about 70% matching `ho:*`) in batches while `consume` runs; returns the matching offsets. */
  async function stream(total: number, batch: number, rnd: () => number): Promise<number[]> {
    const want: number[] = [];
    for (let sent = 0; sent < total; sent += batch) {
      const spec = Array.from({ length: Math.min(batch, total - sent) }, (): [string, string] => [rnd() < 0.7 ? 'ho' : 'other', 't']);
      const stored = await rig.ingest(spec);
      for (const e of stored) if (e.sender === 'ho') want.push(Number(e.offset));
      if (rnd() < 0.3) await sleep(1);
    }
    return want;
  }

  test('a consumer that detaches at random points while 30,000 events stream gets every matching offset once, in order', async () => {
    const seed = Number(process.env.HERALD_TEST_SEED ?? Date.now() % 100_000);
    const rnd = prng(seed);
    const m = await rig.manager();
    await m.create({ name: 'ho', selector: 'ho:*', start: 'new' });
    const t0 = Date.now();
    let producing = true;
    let want: number[] = [];
    const producer = stream(30_000, 250, rnd).then((w) => {
      want = w;
      producing = false;
    });
    /** Events whose batch was acknowledged, in the order processed. */
    const processed: number[] = [];
    let attaches = 0;
    let unackedBatches = 0;
    while (producing || processed.length < want.length) {
      if (Date.now() - t0 > 90_000) assert.fail(`timed out (seed ${seed}): ${processed.length} of ${want.length}`);
      const c = await m.attach({ name: 'ho', consumer: `test ${++attaches}`, maxInFlight: 50 + Math.floor(rnd() * 500) });
      await c.active;
      const seen: number[] = [];
      const batches = 1 + Math.floor(rnd() * 40);
      for (let b = 0; b < batches; b++) {
        const got: DeliveredEvent[] = await c.next(1 + Math.floor(rnd() * 300), AbortSignal.timeout(1000));
        if (got.length === 0) {
          if (!producing && processed.length >= want.length) break;
          continue;
        }
        seen.push(...offsetsOf(got));
        const lastOne = b === batches - 1;
        if (lastOne && rnd() < 0.3) {
          unackedBatches++;
          break; // detach without acknowledging: these must come again
        }
        processed.push(...offsetsOf(got));
        c.ack((got[got.length - 1] as DeliveredEvent).offset);
      }
      assertIncreasing(seen, `seed ${seed}, attach ${attaches}`);
      await c.close();
      if (rnd() < 0.5) await sleep(Math.floor(rnd() * 30));
    }
    await producer;
    assert.ok(want.length > 20_000, `${want.length} matching events`);
    assertIncreasing(processed, `seed ${seed}: processed`);
    assert.equal(processed.length, want.length, `seed ${seed}`);
    assert.deepEqual(processed, want, `seed ${seed}`);
    const view = await m.get('ho');
    assert.equal(view?.ackedOffset, BigInt(want[want.length - 1] as number));
    assert.equal(view?.lagEvents, 0);
    console.log(
      `handover: ${want.length} matching of 30000 events, ${attaches} attaches (${unackedBatches} left unacknowledged), ${Date.now() - t0} ms, seed ${seed}`,
    );
    await m.delete('ho');
    await m.stop();
  });

  test('pauses come and go while events stream: the subscription never passes a held event, and gets every one in order', async () => {
    const rnd = prng(11);
    const m = await rig.manager({ liveBufferMax: 500 });
    await m.create({ name: 'pz', selector: 'pz:*', start: 'new' });
    const c = await m.attach({ name: 'pz', consumer: 'test', maxInFlight: 200 });
    await c.active;
    const want: number[] = [];
    /** Offsets the current pause holds (cleared when it is resumed). */
    const held = new Set<number>();
    let heldTotal = 0;
    let pause: string | undefined;
    let producing = true;
    let pauses = 0;
    const producer = (async () => {
      for (let i = 0; i < 40; i++) {
        if (i % 8 === 2) {
          pause = (await rig.dispatcher.createPause({ selector: 'pz:held', ttl: 60 })).id;
          pauses++;
        }
        if (i % 8 === 6 && pause) {
          const id = pause;
          pause = undefined;
          held.clear();
          await rig.dispatcher.resume(id);
        }
        const spec = Array.from({ length: 250 }, (): [string, string] => [rnd() < 0.8 ? 'pz' : 'other', rnd() < 0.1 ? 'held' : 't']);
        for (const e of await rig.ingest(spec)) {
          if (e.sender !== 'pz') continue;
          want.push(Number(e.offset));
          if (pause && e.type === 'held') {
            held.add(Number(e.offset));
            heldTotal++;
          }
        }
        await sleep(5);
      }
      producing = false;
    })();
    const got: number[] = [];
    const t0 = Date.now();
    while (producing || got.length < want.length) {
      if (Date.now() - t0 > 40_000) assert.fail(`timed out: ${got.length} of ${want.length}`);
      const batch = await c.next(1 + Math.floor(rnd() * 100), AbortSignal.timeout(1000));
      if (batch.length === 0) continue;
      const offs = offsetsOf(batch);
      // While its pause holds an event, nothing at or above it is delivered.
      if (pause && held.size > 0) {
        const firstHeld = Math.min(...held);
        for (const o of offs) assert.ok(o < firstHeld, `${o} delivered while ${firstHeld} is held`);
      }
      got.push(...offs);
      c.ack((batch[batch.length - 1] as DeliveredEvent).offset);
    }
    await producer;
    assertIncreasing(got, 'pauses');
    assert.deepEqual(got, want);
    console.log(`pauses: ${want.length} events, ${pauses} pauses holding ${heldTotal} of them, ${Date.now() - t0} ms`);
    await c.close();
    await m.delete('pz');
    await m.stop();
  });

  test('an in-memory receiver of 50 overflows under a slow consumer: every event still arrives, in order', async () => {
    const rnd = prng(7);
    const m = await rig.manager({ liveBufferMax: 50 });
    await m.create({ name: 'ov', selector: 'ho:*', start: 'new' });
    const c = await m.attach({ name: 'ov', consumer: 'slow', maxInFlight: 20 });
    await c.active;
    let want: number[] = [];
    let producing = true;
    const producer = stream(6000, 300, rnd).then((w) => {
      want = w;
      producing = false;
    });
    const got: number[] = [];
    const t0 = Date.now();
    while (producing || got.length < want.length) {
      if (Date.now() - t0 > 40_000) assert.fail(`timed out: ${got.length} of ${want.length}`);
      const batch = await c.next(10, AbortSignal.timeout(1000));
      if (batch.length === 0) continue;
      got.push(...offsetsOf(batch));
      c.ack((batch[batch.length - 1] as DeliveredEvent).offset);
      await sleep(2);
    }
    await producer;
    assertIncreasing(got, 'overflow');
    assert.deepEqual(got, want);
    console.log(`slow consumer: ${want.length} events, live buffer of 50, ${Date.now() - t0} ms`);
    await c.close();
    await m.stop();

    // While it sleeps the subscription is an offset: RabbitMQ keeps no copy of its events (there is
    // no queue of it), and the log has them all.
    const more = await stream(3000, 300, rnd);
    const conn = await connect(rig.vhost.url);
    conn.on('error', () => undefined);
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await assert.rejects(ch.checkQueue(`herald.sub.${parseSelector('ho:*').hash}`), (err: { code?: number }) => err.code === 404);
    await conn.close().catch(() => undefined);
    const m2 = await rig.manager({ liveBufferMax: 50 });
    const c2 = await m2.attach({ name: 'ov', consumer: 'back' });
    const rest: number[] = [];
    while (rest.length < more.length) {
      if (Date.now() - t0 > 50_000) assert.fail(`timed out: ${rest.length} of ${more.length}`);
      const batch = await c2.next(100, AbortSignal.timeout(1000));
      if (batch.length === 0) continue;
      rest.push(...offsetsOf(batch));
      c2.ack((batch[batch.length - 1] as DeliveredEvent).offset);
    }
    assert.deepEqual(rest, more);
    assert.deepEqual(await c2.next(100, AbortSignal.timeout(300)), []);
    await c2.close();
    await m2.delete('ov');
    await m2.stop();
  });
});
