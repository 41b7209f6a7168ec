import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUDGETS } from '../caps/index.ts';
import { normalizeConfig } from './config.ts';

test('the direct path budgets default to the table and are set by flag option or environment', () => {
  const d = normalizeConfig({}, {});
  assert.deepEqual(
    [d.publishMaxBytes, d.publishMaxEvents, d.publishMaxUnforwarded],
    [BUDGETS.publishBytes.default, BUDGETS.publishEvents.default, BUDGETS.publishUnforwarded.default],
  );
  const set = normalizeConfig(
    { publishMaxEvents: 7 },
    { HERALD_PUBLISH_MAX_BYTES: '2097152', HERALD_PUBLISH_MAX_EVENTS: '9', HERALD_PUBLISH_MAX_UNFORWARDED: '5' },
  );
  assert.deepEqual([set.publishMaxBytes, set.publishMaxEvents, set.publishMaxUnforwarded], [2_097_152, 7, 5]);
});

test('a byte budget below the max event size, or a count of 0, is refused naming the setting', () => {
  assert.throws(
    () => normalizeConfig({}, { HERALD_PUBLISH_MAX_BYTES: '1000' }),
    (err: Error) =>
      /HERALD_PUBLISH_MAX_BYTES/.test(err.message) && /at least the max event size \(HERALD_MAX_EVENT_BYTES/.test(err.message),
  );
  assert.throws(
    () => normalizeConfig({}, { HERALD_PUBLISH_MAX_UNFORWARDED: '0' }),
    (err: Error) => /HERALD_PUBLISH_MAX_UNFORWARDED/.test(err.message),
  );
});
