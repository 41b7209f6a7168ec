import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertSender, assertType, parseRoutingKey } from './names.ts';

test('refusals quote a bad name briefly, never the whole of a huge one', () => {
  const huge = 'é'.repeat(50_000);
  for (const check of [() => assertSender(huge), () => assertType(huge), () => assertType(`a.${huge}`), () => parseRoutingKey(huge)]) {
    assert.throws(check, (err: Error) => err.message.length < 200);
  }
  assert.throws(() => assertSender('a b'), /^ValidationError: invalid sender "a b": expected 1-64 characters/);
});
