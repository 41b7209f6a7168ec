// The catch-up/live state machine of one attached consumer, driven through its transitions against
// a log held in memory (ConsumerCore is the manager's interface to it; the manager's own tests run
// the same consumer against PostgreSQL, the embedded store and RabbitMQ).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSelector } from '@herald/core';
import type { StoredEvent } from '../store/types.ts';
import { AttachedConsumer, type ConsumerCore, Sub } from './consumer.ts';
import type { DeliveredEvent } from './types.ts';

/** A log in memory and what the consumer asked of it. */
class MemoryCore implements ConsumerCore {
  readonly log: StoredEvent[] = [];
  readonly store = {
    query: async () => [],
    headOffset: async () => this.head(),
  } as unknown as ConsumerCore['store'];
  readonly subStore = {
    offsets: async (_s: unknown, after: bigint, upTo: bigint | undefined, limit: number) => {
      this.offsetQueries++;
      return this.log
        .filter((e) => e.offset > after && (upTo === undefined || e.offset <= upTo))
        .slice(0, limit)
        .map((e) => e.offset);
    },
  } as unknown as ConsumerCore['subStore'];
  readonly metrics = undefined;
  readonly liveBytes = { used: 0, max: 1 << 30 };
  /** Offsets above this are not readable yet (a pause, dispatch in progress). */
  horizon: bigint | undefined;
  logReads = 0;
  offsetQueries = 0;

  constructor(
    readonly chunk = 4,
    readonly liveBufferMax = 100,
  ) {}

  head(): bigint {
    return this.log.length === 0 ? 0n : (this.log[this.log.length - 1] as StoredEvent).offset;
  }

  append(n: number, bytes = 1): StoredEvent[] {
    const out: StoredEvent[] = [];
    for (let i = 0; i < n; i++) {
      const offset = this.head() + 1n;
      const e = {
        id: `id-${offset}`,
        sender: 's',
        type: 't',
        time: 0,
        data: new Uint8Array(bytes),
        offset,
        storedAt: 0,
      } as unknown as StoredEvent;
      this.log.push(e);
      out.push(e);
    }
    return out;
  }

  async readLog(_sub: Sub, after: bigint, limit: number): Promise<StoredEvent[]> {
    this.logReads++;
    const top = this.horizon;
    return this.log.filter((e) => e.offset > after && (top === undefined || e.offset <= top)).slice(0, limit);
  }
  async readReplay(): Promise<DeliveredEvent[]> {
    return [];
  }
  acked(sub: Sub, offset: bigint): void {
    if (offset > sub.acked) sub.acked = offset;
  }
  async detach(): Promise<void> {}
  warn(): void {}
}

function rig(opts: { chunk?: number; liveBufferMax?: number; maxInFlight?: number; acked?: bigint } = {}) {
  const core = new MemoryCore(opts.chunk, opts.liveBufferMax);
  const sub = new Sub('s1', parseSelector('s:*'), 0, opts.acked ?? 0n);
  const c = new AttachedConsumer(core, sub, 'test', opts.maxInFlight ?? 1000);
  sub.active = c;
  return { core, sub, c };
}

const offsets = (events: readonly DeliveredEvent[]) => events.map((e) => Number(e.offset));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Takes what next() gives until `count` events came, acknowledging each batch. */
async function take(c: AttachedConsumer, count: number): Promise<number[]> {
  const got: number[] = [];
  while (got.length < count) {
    const batch = await c.next(1000, AbortSignal.timeout(5000));
    assert.ok(batch.length > 0, `next() gave nothing after ${got.length} of ${count}`);
    got.push(...offsets(batch));
    c.ack((batch[batch.length - 1] as DeliveredEvent).offset);
  }
  return got;
}

test('catch-up reads the log from the acknowledged offset in chunks, then goes live', async () => {
  const { core, c } = rig({ chunk: 4, acked: 2n });
  core.append(10);
  c.activate();
  assert.deepEqual(await take(c, 8), range(3, 10));
  // Live: a contiguous batch is delivered from memory, without reading the log.
  const reads = core.logReads;
  c.onLive(core.append(3));
  assert.deepEqual(await take(c, 3), [11, 12, 13]);
  assert.equal(core.logReads, reads, 'a contiguous live batch is taken without a log read');
  assert.equal(core.offsetQueries, 0);
});

test('live events at or below the position (already read in catch-up) are skipped: none twice', async () => {
  const { core, c } = rig({ chunk: 100 });
  const first = core.append(5);
  c.activate();
  assert.deepEqual(await take(c, 5), range(1, 5));
  // The receiver brings 1..5 again (published while catch-up read them) and then 6..7.
  c.onLive([...first, ...core.append(2)]);
  assert.deepEqual(await take(c, 2), [6, 7]);
});

test('a live batch with a hole the log fills goes back to catch-up and reads the missing event from the log', async () => {
  const { core, c } = rig({ chunk: 100 });
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), [], 'an empty log gives nothing');
  const events = core.append(3);
  // The receiver lost offset 2 (an overflow, a lost connection): the batch is 1 and 3.
  c.onLive([events[0] as StoredEvent, events[2] as StoredEvent]);
  assert.deepEqual(await take(c, 3), [1, 2, 3]);
  assert.ok(core.offsetQueries >= 1, 'the hole was checked against the log');
});

test('a live batch with a hole the log does not fill (events of other selectors) is delivered as it is', async () => {
  const { core, c } = rig({ chunk: 100 });
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), []);
  const events = core.append(3);
  // Offset 2 is not this subscription's: the log query over (0, 3] answers 1 and 3 only.
  core.log.splice(1, 1);
  const reads = core.logReads;
  c.onLive([events[0] as StoredEvent, events[2] as StoredEvent]);
  assert.deepEqual(await take(c, 2), [1, 3]);
  assert.equal(core.logReads, reads, 'delivered from memory after one offsets query');
  assert.equal(core.offsetQueries, 1);
});

test('a live buffer over its bound is dropped and the log read instead: nothing lost, in order', async () => {
  const { core, c } = rig({ chunk: 50, liveBufferMax: 10 });
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), []);
  c.onLive(core.append(25));
  assert.deepEqual(await take(c, 25), range(1, 25));
});

test('a live buffer over its bytes (8 MiB) is dropped, and the hub-wide budget follows what is buffered', async () => {
  const { core, c } = rig({ chunk: 50, liveBufferMax: 10_000 });
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), []);
  c.onLive(core.append(3, 1024 * 1024));
  assert.equal(c.buffered, 3);
  assert.equal(core.liveBytes.used, 3 * 1024 * 1024);
  c.onLive(core.append(7, 1024 * 1024)); // 10 MiB: over the bound
  assert.equal(c.buffered, 0, 'dropped');
  assert.equal(core.liveBytes.used, 0);
  assert.deepEqual(await take(c, 10), range(1, 10));
  assert.equal(core.liveBytes.used, 0);
});

test('the live buffer keeps 8 MiB exactly and drops at one byte over, its running count following takes and trims', async () => {
  const MiB = 1024 * 1024;
  const { core, c } = rig({ chunk: 50, liveBufferMax: 10_000 });
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), []);
  c.onLive(core.append(8, MiB)); // exactly the bound: kept
  assert.equal(c.buffered, 8);
  assert.equal(core.liveBytes.used, 8 * MiB);
  const reads = core.logReads;
  assert.deepEqual(offsets(await c.next(3)), [1, 2, 3], 'taken from the buffer');
  assert.equal(core.logReads, reads, 'without a log read');
  assert.equal(c.buffered, 5);
  assert.equal(core.liveBytes.used, 5 * MiB, 'what was taken is counted out');
  c.ack(3n);
  // 2 and 3 come again from the receiver (already delivered): kept out at once, nothing counted.
  c.onLive([...core.log.slice(1, 3), ...core.append(3, MiB)]); // 5 + 3 MiB: at the bound again, kept
  assert.equal(c.buffered, 8);
  assert.equal(core.liveBytes.used, 8 * MiB);
  c.skipTo(5n); // an ack through another transport trims 4 and 5
  assert.equal(c.buffered, 6);
  assert.equal(core.liveBytes.used, 6 * MiB, 'what skipTo trims is counted out');
  c.onLive(core.append(2, MiB)); // 8 MiB again: kept
  assert.equal(c.buffered, 8);
  assert.equal(core.liveBytes.used, 8 * MiB);
  c.onLive(core.append(1, 1)); // one byte over: dropped, the log read instead
  assert.equal(c.buffered, 0, 'dropped at one byte over');
  assert.equal(core.liveBytes.used, 0);
  assert.deepEqual(await take(c, 9), range(6, 14));
  assert.equal(core.liveBytes.used, 0);
});

test('the hub-wide budget: exactly at it the buffer is kept, one byte over it is dropped', async () => {
  const { core, c } = rig({ chunk: 50 });
  (core.liveBytes as { max: number }).max = 1000;
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), []);
  c.onLive(core.append(10, 100));
  assert.equal(c.buffered, 10, 'at the budget: kept');
  assert.deepEqual(offsets(await c.next(4)), [1, 2, 3, 4]);
  assert.equal(core.liveBytes.used, 600);
  c.onLive(core.append(4, 100));
  assert.equal(c.buffered, 10, 'at the budget again: kept');
  assert.equal(core.liveBytes.used, 1000);
  c.onLive(core.append(1, 1));
  assert.equal(c.buffered, 0, 'one byte over: dropped');
  assert.equal(core.liveBytes.used, 0);
  assert.deepEqual(await take(c, 11), range(5, 15));
});

test('the hub-wide budget of live buffers: a consumer whose events would pass it reads the log instead', async () => {
  const { core, c } = rig({ chunk: 50 });
  (core.liveBytes as { max: number }).max = 1000;
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), []);
  c.onLive(core.append(5, 100));
  assert.equal(c.buffered, 5);
  c.onLive(core.append(6, 100));
  assert.equal(c.buffered, 0, 'over the budget: dropped');
  assert.deepEqual(await take(c, 11), range(1, 11));
  await c.close();
  assert.equal(core.liveBytes.used, 0, 'a closed consumer gives its bytes back');
});

test('events above the horizon (held by a pause) wait; the consumer stalls, then delivers them once readable', async () => {
  const { core, c } = rig({ chunk: 50 });
  core.append(3);
  core.horizon = 1n;
  c.activate();
  assert.deepEqual(await take(c, 1), [1]);
  // 2 and 3 are held: next() finds nothing within its wait.
  assert.deepEqual(await c.next(10, AbortSignal.timeout(150)), []);
  core.horizon = undefined;
  assert.deepEqual(await take(c, 2), [2, 3]);
});

test('maxInFlight bounds what is delivered and not acknowledged; an ack frees the window', async () => {
  const { core, c } = rig({ chunk: 100, maxInFlight: 3 });
  core.append(5);
  c.activate();
  assert.deepEqual(offsets(await c.next(10)), [1, 2, 3]);
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), [], 'the window is full');
  c.ack(2n);
  assert.deepEqual(offsets(await c.next(10)), [4, 5]);
});

test('an ack above the last delivered offset is refused; one from another transport (skipTo) moves past', async () => {
  const { core, sub, c } = rig({ chunk: 100 });
  core.append(6);
  c.activate();
  assert.deepEqual(offsets(await c.next(2)), [1, 2]);
  assert.throws(() => c.ack(5n), /above the last delivered offset 2/);
  c.skipTo(4n);
  assert.equal(sub.acked, 4n);
  assert.deepEqual(offsets(await c.next(10)), [5, 6]);
});

test('a standby waits until it is activated; ended before, its active promise rejects', async () => {
  const { core, sub } = rig({ chunk: 100 });
  core.append(2);
  const standby = new AttachedConsumer(core, sub, 'second', 100);
  const pending = standby.next(10);
  let settled = false;
  void pending.then(() => {
    settled = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, 'a standby delivers nothing');
  standby.activate();
  assert.deepEqual(offsets(await pending), [1, 2]);

  const other = new AttachedConsumer(core, sub, 'third', 100);
  other.end('subscription deleted');
  await assert.rejects(other.active, /consumer ended: subscription deleted/);
  assert.deepEqual(await other.next(10), []);
});

test('reset (the receivers reconnected) reads the log: what was published meanwhile arrives', async () => {
  const { core, c } = rig({ chunk: 100 });
  c.activate();
  assert.deepEqual(await c.next(10, AbortSignal.timeout(100)), []);
  core.append(3); // published while the receivers were away: no live message comes
  c.reset();
  assert.deepEqual(await take(c, 3), [1, 2, 3]);
});
