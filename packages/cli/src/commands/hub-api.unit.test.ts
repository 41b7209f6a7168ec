import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from './hub-api.ts';

test('parseDuration reads seconds, units and combinations, and refuses the rest naming the flag', () => {
  assert.equal(parseDuration('90'), 90);
  assert.equal(parseDuration('30s'), 30);
  assert.equal(parseDuration('5m'), 300);
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('500ms'), 0.5);
  assert.equal(parseDuration('1d'), 86400);
  for (const bad of ['', '5x', 'm', '5m3', '-5m', '0s']) assert.throws(() => parseDuration(bad), /invalid --ttl/);
});
