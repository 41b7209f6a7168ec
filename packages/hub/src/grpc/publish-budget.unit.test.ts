import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type BudgetClaimant, PublishBudget, type Take } from './publish-budget.ts';

/** A stream's side: events of `sizes` held back until admitted, in order. */
function stream(name: string, admitted: string[]): BudgetClaimant & { read(...sizes: number[]): void; held: number[] } {
  const held: number[] = [];
  return {
    held,
    read(...sizes) {
      held.push(...sizes);
    },
    admit(take: Take) {
      while (held.length > 0 && take(held[0] as number)) admitted.push(`${name}:${held.shift()}`);
      return held.length === 0;
    },
  };
}

test('what fits is taken at once; the rest waits in line and takes room as it is given back', () => {
  const budget = new PublishBudget({ maxBytes: 100, maxEvents: 10 });
  const admitted: string[] = [];
  const a = stream('a', admitted);
  a.read(40, 40, 40);
  budget.claim(a);
  assert.deepEqual(admitted, ['a:40', 'a:40']);
  assert.deepEqual(a.held, [40]);
  assert.equal(budget.stats().waiting, 1);
  budget.release(40, 1);
  assert.deepEqual(admitted, ['a:40', 'a:40', 'a:40']);
  assert.deepEqual(
    { ...budget.stats(), peakBytes: undefined },
    {
      maxBytes: 100,
      maxEvents: 10,
      bytes: 80,
      events: 2,
      peakBytes: undefined,
      peakEvents: 2,
      waiting: 0,
      held: 1,
    },
  );
  assert.equal(budget.stats().peakBytes, 80, 'never above the budget');
});

test('streams in line are served in the order they got there; one asking later gets in behind them', () => {
  const budget = new PublishBudget({ maxBytes: 1000, maxEvents: 2 });
  const admitted: string[] = [];
  const [a, b, c] = [stream('a', admitted), stream('b', admitted), stream('c', admitted)];
  a.read(1, 1, 1);
  budget.claim(a); // takes 2, waits for 1
  b.read(1);
  budget.claim(b); // the budget is full: in line behind a
  budget.release(1, 1); // a's third
  c.read(1);
  budget.claim(c); // b waits: c gets in line, although the room would fit it after the next release
  assert.deepEqual(admitted, ['a:1', 'a:1', 'a:1']);
  budget.release(1, 1);
  assert.deepEqual(admitted.slice(3), ['b:1'], 'b before c');
  budget.release(2, 2);
  assert.deepEqual(admitted.slice(4), ['c:1']);
  assert.equal(budget.stats().waiting, 0);
  assert.equal(budget.stats().peakEvents, 2);
});

test('a stream that leaves the line lets the next one take the room; an event larger than the budget goes alone', () => {
  const budget = new PublishBudget({ maxBytes: 10, maxEvents: 100 });
  const admitted: string[] = [];
  const [a, b] = [stream('a', admitted), stream('b', admitted)];
  a.read(8);
  budget.claim(a);
  a.read(8);
  budget.claim(a); // does not fit: a waits
  b.read(1);
  budget.claim(b); // would fit, but a is first in line
  assert.deepEqual(admitted, ['a:8']);
  budget.leave(a); // a ended: its held event is dropped
  assert.deepEqual(admitted, ['a:8', 'b:1']);
  budget.release(9, 2);
  const big = stream('big', admitted);
  big.read(50);
  budget.claim(big);
  assert.deepEqual(admitted.slice(2), ['big:50'], 'nothing else taken: the large event goes alone');
  big.read(1);
  budget.claim(big);
  assert.equal(big.held.length, 1, 'nothing more beside it');
  budget.release(50, 1);
  assert.deepEqual(admitted.slice(3), ['big:1']);
});
