import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, hasCode } from '@herald/core';
import { boundToJson, normalizeReplayInput } from './replay.ts';

const field = (f: string) => (err: unknown) => hasCode(err, ErrorCodes.INVALID_REQUEST) && err.details?.parameter === f;

describe('normalizeReplayInput', () => {
  test('the three kinds of start, two kinds of end, target flow by default', () => {
    assert.deepEqual(normalizeReplayInput({ selector: 's1:t1,s1:t2', from: { last: 10 } }).from, { last: 10 });
    const n = normalizeReplayInput({ selector: ['s1:*'], from: { offset: 5 }, to: { offset: '9' }, target: 'flow' });
    assert.deepEqual(n.from, { offset: 5n });
    assert.deepEqual(n.to, { offset: 9n });
    assert.equal(n.target, 'flow');
    const t = normalizeReplayInput({ selector: 's1:*', from: { time: '2026-01-01T00:00:00Z' }, to: { time: '2026-01-02T00:00:00Z' } });
    assert.deepEqual(t.from, { time: Date.parse('2026-01-01T00:00:00Z') });
    assert.deepEqual(boundToJson(t.from), { time: '2026-01-01T00:00:00.000Z' });
  });

  test('bad requests name their field', () => {
    assert.throws(() => normalizeReplayInput({ selector: 's1:*', from: undefined }), field('from'));
    assert.throws(() => normalizeReplayInput({ selector: 's1:*', from: { last: 0 } }), field('from.last'));
    assert.throws(() => normalizeReplayInput({ selector: 's1:*', from: { last: 1, offset: 2 } }), field('from'));
    assert.throws(() => normalizeReplayInput({ selector: 's1:*', from: { offset: -1 } }), field('from.offset'));
    assert.throws(() => normalizeReplayInput({ selector: 's1:*', from: { time: 'yesterday' } }), field('from.time'));
    assert.throws(() => normalizeReplayInput({ selector: 's1:*', from: { last: 1 }, to: { last: 1 } }), field('to'));
    assert.throws(
      () => normalizeReplayInput({ selector: 's1:*', from: { last: 1 }, target: 'subscription:orders' }),
      (err: unknown) => field('target')(err) && /only "flow"/.test((err as Error).message),
    );
    assert.throws(
      () => normalizeReplayInput({ selector: 'bad', from: { last: 1 } }),
      (err: unknown) => hasCode(err, ErrorCodes.INVALID_SELECTOR),
    );
  });
});
