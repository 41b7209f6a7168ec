// The in-memory receivers with subscriptions wired to them as the manager wires them (each Sub
// tells its selector's receiver when it wakes and sleeps): a batch goes only to the selectors
// awake, and feed() looks at those alone, however many subscriptions sleep.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSelector } from '@herald/core';
import type { StoredEvent } from '../store/types.ts';
import { type AttachedConsumer, Sub } from './consumer.ts';
import { MemoryReceivers } from './memory-receivers.ts';

function event(offset: number, sender: string, type = 't'): StoredEvent {
  return {
    id: `id-${offset}`,
    sender,
    type,
    time: 0,
    data: new Uint8Array(1),
    offset: BigInt(offset),
    storedAt: 0,
  } as unknown as StoredEvent;
}

function rig(count: number) {
  const delivered: { hash: string; offsets: number[] }[] = [];
  const receivers = new MemoryReceivers((hash, events) => delivered.push({ hash, offsets: events.map((e) => Number(e.offset)) }));
  const subs: Sub[] = [];
  for (let i = 0; i < count; i++) {
    const selector = parseSelector(`s${i}:*,all:*`);
    receivers.add(selector);
    subs.push(new Sub(`sub-${i}`, selector, 0, 0n, (s, awake) => receivers.setAwake(s.selector.hash, awake)));
  }
  return { receivers, subs, delivered };
}

const consumer = { end: () => undefined } as unknown as AttachedConsumer;

test('1,000 sleeping subscriptions and 1 awake: a batch goes to the awake one, and feed looks at it alone', () => {
  const { receivers, subs, delivered } = rig(1001);
  const awake = subs[1000] as Sub;
  awake.active = consumer;
  assert.equal(receivers.awakeCount, 1);
  const before = receivers.examined;
  receivers.feed([event(1, 'all'), event(2, 's1000'), event(3, 's7')]);
  assert.deepEqual(delivered, [{ hash: awake.selector.hash, offsets: [1, 2] }]);
  assert.equal(receivers.examined - before, 1, 'receivers examined per feed: the awake ones');
  // A second batch: still one examined, whatever the batch holds.
  receivers.feed([event(4, 'all')]);
  assert.equal(receivers.examined - before, 2);
});

test('a waiting pull wakes its selector, and the last one leaving puts it to sleep; so does the consumer going', () => {
  const { receivers, subs, delivered } = rig(1000);
  const pulled = subs[3] as Sub;
  const streamed = subs[9] as Sub;
  const w1 = () => undefined;
  const w2 = () => undefined;
  pulled.waiters.add(w1);
  pulled.waiters.add(w2);
  streamed.active = consumer;
  assert.equal(receivers.awakeCount, 2);
  receivers.feed([event(1, 'all')]);
  assert.deepEqual(delivered.map((d) => d.hash).sort(), [pulled.selector.hash, streamed.selector.hash].sort());
  assert.equal(receivers.examined, 2);

  pulled.waiters.delete(w1);
  assert.equal(receivers.awakeCount, 2, 'one pull still waits');
  pulled.waiters.delete(w2);
  pulled.waiters.delete(w2); // removed already: no change counted twice
  streamed.active = consumer; // the same state again: nothing to tell
  assert.equal(receivers.awakeCount, 1);
  streamed.endConsumers('subscription deleted');
  assert.equal(receivers.awakeCount, 0);
  delivered.length = 0;
  receivers.feed([event(2, 'all'), event(3, 's3')]);
  assert.deepEqual(delivered, [], 'nobody awake: nothing delivered');
  assert.equal(receivers.examined, 2, 'and nothing examined');
});

test('two subscriptions of one selector: it stays awake until both sleep; a removed receiver gets nothing', () => {
  const delivered: string[] = [];
  const receivers = new MemoryReceivers((hash) => delivered.push(hash));
  const selector = parseSelector('billing:*');
  receivers.add(selector);
  const listen = (s: Sub, awake: boolean) => receivers.setAwake(s.selector.hash, awake);
  const a = new Sub('a', selector, 0, 0n, listen);
  const b = new Sub('b', selector, 0, 0n, listen);
  a.active = consumer;
  b.active = consumer;
  a.active = undefined;
  receivers.feed([event(1, 'billing')]);
  assert.deepEqual(delivered, [selector.hash], 'b still awake');
  receivers.remove(selector.hash);
  receivers.feed([event(2, 'billing')]);
  assert.deepEqual(delivered, [selector.hash], 'the receiver is gone');
  b.active = undefined;
  assert.equal(receivers.awakeCount, 0);
  // A sleep with none awake (never paired with a wake) leaves the count at none.
  receivers.setAwake(selector.hash, false);
  assert.equal(receivers.awakeCount, 0);
});
