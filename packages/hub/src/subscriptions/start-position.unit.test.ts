import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, hasCode } from '@herald/core';
import { assertSubscriptionName, normalizeStart } from './start-position.ts';

const field = (f: string) => (err: unknown) => hasCode(err, ErrorCodes.INVALID_REQUEST) && err.details?.parameter === f;

describe('subscription start and name', () => {
  test('the JSON forms and the StartPosition forms', () => {
    assert.equal(normalizeStart(undefined), 'new');
    assert.equal(normalizeStart('new'), 'new');
    assert.equal(normalizeStart('earliest'), 'earliest');
    assert.deepEqual(normalizeStart({ offset: 5 }), { offset: 5n });
    assert.deepEqual(normalizeStart({ offset: '12345678901234567' }), { offset: 12345678901234567n });
    assert.deepEqual(normalizeStart({ offset: 7n }), { offset: 7n });
    assert.deepEqual(normalizeStart({ time: '2026-01-31T12:00:00Z' }), { time: Date.parse('2026-01-31T12:00:00Z') });
    assert.deepEqual(normalizeStart({ time: 1000 }), { time: 1000 });
    assert.deepEqual(normalizeStart({ last: 10 }), { last: 10 });
  });

  test('bad starts name the field', () => {
    assert.throws(() => normalizeStart('latest'), field('start'));
    assert.throws(() => normalizeStart({ offset: 1, last: 2 }), field('start'));
    assert.throws(() => normalizeStart({ offset: -1 }), field('start.offset'));
    assert.throws(() => normalizeStart({ time: 'yesterday' }), field('start.time'));
    assert.throws(() => normalizeStart({ last: 0 }), field('start.last'));
    assert.throws(() => normalizeStart({ last: 100_001 }), field('start.last'));
  });

  test('names: 1-128 of A-Z a-z 0-9 _ . -', () => {
    assertSubscriptionName('orders.v2_eu-1');
    assert.throws(() => assertSubscriptionName(''), field('name'));
    assert.throws(() => assertSubscriptionName('a b'), field('name'));
    assert.throws(() => assertSubscriptionName('x'.repeat(129)), field('name'));
    assert.throws(() => assertSubscriptionName(42), field('name'));
  });
});
