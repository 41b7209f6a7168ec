import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../usage.ts';
import { normalizeBenchOptions, safeUrl } from './options.ts';

describe('bench options', () => {
  it('fills in the defaults', () => {
    const o = normalizeBenchOptions({}, {});
    assert.equal(o.senders, 3);
    assert.equal(o.types, 4);
    assert.equal(o.rate, 'max');
    assert.equal(o.count, 10_000);
    assert.equal(o.durationMs, undefined);
    assert.equal(o.size, 1024);
    assert.equal(o.url, 'amqp://guest:guest@127.0.0.1:5672');
    assert.equal(normalizeBenchOptions({}, { HERALD_AMQP_URL: 'amqp://x' }).url, 'amqp://x');
    assert.equal(normalizeBenchOptions({ amqpUrl: 'amqp://y' }, { HERALD_AMQP_URL: 'amqp://x' }).url, 'amqp://y');
  });

  it('takes a duration instead of a count, and a numeric rate', () => {
    const o = normalizeBenchOptions({ duration: '20', rate: '1000' }, {});
    assert.equal(o.count, undefined);
    assert.equal(o.durationMs, 20_000);
    assert.equal(o.rate, 1000);
  });

  it('reads durations with units; a bare number keeps its unit: seconds for --duration, ms for the others', () => {
    assert.equal(normalizeBenchOptions({ duration: '1m30s' }, {}).durationMs, 90_000);
    assert.equal(normalizeBenchOptions({ duration: '500ms' }, {}).durationMs, 500);
    const o = normalizeBenchOptions({ warmup: '2s', drainTimeout: '1500' }, {});
    assert.equal(o.warmupMs, 2000);
    assert.equal(o.drainTimeoutMs, 1500);
    assert.equal(normalizeBenchOptions({ warmup: '1500' }, {}).warmupMs, 1500);
    assert.equal(normalizeBenchOptions({ drainTimeout: '0' }, {}).drainTimeoutMs, 0);
    assert.equal(normalizeBenchOptions({}, {}).warmupMs, 5000);
    const usage = (re: RegExp) => (err: unknown) => err instanceof UsageError && re.test(err.message);
    assert.throws(() => normalizeBenchOptions({ duration: '5parsecs' }, {}), usage(/^invalid --duration "5parsecs": expected a duration/));
    assert.throws(() => normalizeBenchOptions({ duration: '0' }, {}), usage(/--duration "0": must be more than 0/));
    assert.throws(() => normalizeBenchOptions({ warmup: '50ms' }, {}), usage(/--warmup "50ms": expected at least 100ms/));
    assert.throws(() => normalizeBenchOptions({ drainTimeout: '-1' }, {}), usage(/--drain-timeout/));
  });

  it('rejects bad or conflicting options by name, as usage errors', () => {
    assert.throws(() => normalizeBenchOptions({ senders: 'x' }, {}), UsageError);
    assert.throws(() => normalizeBenchOptions({ count: '10', duration: '1' }, {}), /--count and --duration/);
    assert.throws(() => normalizeBenchOptions({ senders: '0' }, {}), /--senders/);
    assert.throws(() => normalizeBenchOptions({ rate: 'fast' }, {}), /--rate/);
    assert.throws(() => normalizeBenchOptions({ count: '1.5' }, {}), /--count/);
  });

  it('runs all five receivers by default, or the chosen kinds, which must include all', () => {
    assert.deepEqual(normalizeBenchOptions({}, {}).receivers, ['one-sender', 'types', 'pairs', 'senders', 'all']);
    assert.deepEqual(normalizeBenchOptions({ receivers: 'all' }, {}).receivers, ['all']);
    assert.throws(() => normalizeBenchOptions({ receivers: 'types' }, {}), /--receivers .*must include all/);
    assert.throws(() => normalizeBenchOptions({ receivers: 'all,everyone' }, {}), /"everyone" is not one of/);
  });

  it('masks the password in URLs it prints', () => {
    assert.equal(safeUrl('amqp://u:secret@h:5672/v'), 'amqp://u:***@h:5672/v');
  });
});
