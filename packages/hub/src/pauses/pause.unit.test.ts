import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileMatcher, ErrorCodes, hasCode } from '@herald/core';
import { normalizePauseInput, partitionHeld } from './pause.ts';

const ev = (sender: string, type: string, offset: number) => ({ sender, type, offset });
const rule = (id: string, selector: string) => ({ id, matches: compileMatcher(selector) });

describe('partitionHeld', () => {
  const batch = [ev('s1', 't1', 1), ev('s2', 't1', 2), ev('s1', 't2', 3), ev('s3', 'a.b', 4), ev('s1', 't1', 5)];

  test('without pauses everything is forwarded (the same array, no copy)', () => {
    const r = partitionHeld(batch, []);
    assert.equal(r.forward, batch);
    assert.deepEqual(r.hold, []);
  });

  test('a pause on s1:* holds exactly the s1 events, keeping order', () => {
    const r = partitionHeld(batch, [rule('p', 's1:*')]);
    assert.deepEqual(
      r.hold.map((e) => e.offset),
      [1, 3, 5],
    );
    assert.deepEqual(
      r.forward.map((e) => e.offset),
      [2, 4],
    );
  });

  test('overlapping pauses: an event is held when any of them matches', () => {
    const r = partitionHeld(batch, [rule('a', 's1:t1'), rule('b', '*:t1')]);
    assert.deepEqual(
      r.hold.map((e) => e.offset),
      [1, 2, 5],
    );
    assert.deepEqual(
      r.forward.map((e) => e.offset),
      [3, 4],
    );
  });

  test('type wildcards and several patterns per pause', () => {
    const r = partitionHeld(batch, [rule('a', 's3:a.#, s2:*')]);
    assert.deepEqual(
      r.hold.map((e) => e.offset),
      [2, 4],
    );
  });
});

describe('normalizePauseInput', () => {
  test('defaults: ttl 300 s, selector canonical, empty reason dropped', () => {
    const n = normalizePauseInput({ selector: ['s1:*', 's1:*'], reason: '' });
    assert.equal(n.ttlMs, 300_000);
    assert.equal(n.selector.canonical, 's1:*');
    assert.equal(n.reason, undefined);
  });

  test('ttl above the maximum is refused naming ttl', () => {
    assert.throws(
      () => normalizePauseInput({ selector: 's1:*', ttl: 90_000 }),
      (err: unknown) => hasCode(err, ErrorCodes.INVALID_REQUEST) && err.details?.parameter === 'ttl' && /at most 86400 s/.test(err.message),
    );
    assert.throws(
      () => normalizePauseInput({ selector: 's1:*', ttl: 11 }, { maxTtlMs: 10_000 }),
      (err: unknown) => hasCode(err, ErrorCodes.INVALID_REQUEST) && err.details?.parameter === 'ttl',
    );
  });

  test('bad ttl and selector are refused', () => {
    for (const ttl of [0, -1, Number.NaN, '5' as unknown as number]) {
      assert.throws(
        () => normalizePauseInput({ selector: 's1:*', ttl }),
        (err: unknown) => hasCode(err, ErrorCodes.INVALID_REQUEST),
      );
    }
    assert.throws(
      () => normalizePauseInput({ selector: 'nocolon' }),
      (err: unknown) => hasCode(err, ErrorCodes.INVALID_SELECTOR),
    );
  });

  test('fractional seconds and configured defaults', () => {
    assert.equal(normalizePauseInput({ selector: 's1:*', ttl: 0.5 }).ttlMs, 500);
    assert.equal(normalizePauseInput({ selector: 's1:*' }, { defaultTtlMs: 60_000 }).ttlMs, 60_000);
  });
});

describe('the configured maximum ttl', () => {
  test('HERALD_PAUSE_MAX_TTL (seconds, default 24 h) and a bad value named in one line', async () => {
    const { normalizeConfig } = await import('../config/index.ts');
    assert.equal(normalizeConfig({}, {}).pauseMaxTtl, 86_400);
    assert.equal(normalizeConfig({}, { HERALD_PAUSE_MAX_TTL: '600' }).pauseMaxTtl, 600);
    assert.equal(normalizeConfig({}, { HERALD_PAUSE_MAX_TTL: '2h' }).pauseMaxTtl, 7200);
    assert.throws(() => normalizeConfig({}, { HERALD_PAUSE_MAX_TTL: '31d' }), /HERALD_PAUSE_MAX_TTL/);
    assert.throws(() => normalizeConfig({}, { HERALD_PAUSE_MAX_TTL: '0' }), /HERALD_PAUSE_MAX_TTL/);
  });
});
