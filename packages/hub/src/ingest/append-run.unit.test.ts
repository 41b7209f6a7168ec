import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countingHooks } from './append-run.ts';
import type { IngestStats } from './types.ts';

const counters = (): IngestStats => ({ stored: 0, duplicates: 0, dead: 0, batches: 0, reconnects: 0 });

test('after an append failed with the store unavailable, the next commit is reported uncertain, once', () => {
  let uncertain = 0;
  const hooks = countingHooks(
    counters(),
    undefined,
    () => undefined,
    () => uncertain++,
  );
  hooks.appended(0.001, 1, [], 0);
  assert.equal(uncertain, 0, 'no failure before: nothing to recheck');
  hooks.unavailable?.();
  hooks.unavailable?.();
  assert.equal(uncertain, 0, 'not before a commit');
  hooks.appended(0.001, 3, [], 3);
  assert.equal(uncertain, 1, 'the commit after the failure');
  hooks.appended(0.001, 1, [], 0);
  assert.equal(uncertain, 1, 'only once per failure');
});
