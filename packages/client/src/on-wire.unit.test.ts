import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OnWire } from './on-wire.ts';

/** Publishes `n` more on `wire`, numbered on from `next`. */
function publish(wire: OnWire<number>, from: number, n: number): number {
  for (let i = 0; i < n; i++) wire.push(from + i);
  return from + n;
}

function take(wire: OnWire<number>, tag: number, multiple: boolean): number[] {
  const got: number[] = [];
  wire.take(tag, multiple, (p) => got.push(p));
  return got;
}

test('a single confirm takes its own tag; a multiple one every tag up to it, in order; each once', () => {
  const wire = new OnWire<number>();
  publish(wire, 1, 6);
  assert.deepEqual(take(wire, 3, false), [3]);
  assert.deepEqual(take(wire, 4, true), [1, 2, 4]);
  assert.deepEqual(take(wire, 4, false), [], 'a tag confirmed twice');
  assert.deepEqual(take(wire, 2, true), [], 'below the window');
  assert.deepEqual(take(wire, 9, true), [], 'a tag never published');
  assert.deepEqual(take(wire, 6, false), [6]);
  assert.deepEqual(wire.drain(), [5]);
});

test('tags stay right across compaction, with publishes made while confirms are handled', () => {
  const wire = new OnWire<number>();
  let next = publish(wire, 1, 3000);
  let confirmed = 0;
  // Confirm in steps of 7, publishing two more for each confirmed one, as the publisher does.
  while (confirmed < 5000) {
    const tag = Math.min(confirmed + 7, next - 1);
    const got: number[] = [];
    wire.take(tag, true, (p) => {
      got.push(p);
      if (next <= 6000) next = publish(wire, next, 1);
    });
    assert.deepEqual(
      got,
      Array.from({ length: tag - confirmed }, (_, i) => confirmed + 1 + i),
    );
    confirmed = tag;
  }
  const left = wire.drain();
  assert.deepEqual(
    left,
    Array.from({ length: next - 1 - confirmed }, (_, i) => confirmed + 1 + i),
  );
  assert.deepEqual(wire.drain(), []);
});

test('odd frames change nothing: a tag that is not a safe integer, zero, negative', () => {
  const wire = new OnWire<number>();
  publish(wire, 1, 3);
  for (const tag of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60, 1.5]) assert.deepEqual(take(wire, tag, true), []);
  assert.deepEqual(take(wire, 3, true), [1, 2, 3]);
});

test('a close while confirms are handled ends the walk: drain() has the rest, once', () => {
  const wire = new OnWire<number>();
  publish(wire, 1, 5);
  let drained: number[] = [];
  const got: number[] = [];
  wire.take(5, true, (p) => {
    got.push(p);
    if (p === 2) drained = wire.drain();
  });
  assert.deepEqual(drained, [3, 4, 5]);
  assert.deepEqual(got, [1, 2]);
});
