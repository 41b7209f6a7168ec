import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
    assert.equal(normalizeBenchOptions({ url: 'amqp://y' }, { HERALD_AMQP_URL: 'amqp://x' }).url, 'amqp://y');
  });

  it('takes a duration instead of a count, and a numeric rate', () => {
    const o = normalizeBenchOptions({ duration: '20', rate: '1000' }, {});
    assert.equal(o.count, undefined);
    assert.equal(o.durationMs, 20_000);
    assert.equal(o.rate, 1000);
  });

  it('rejects bad or conflicting options by name', () => {
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
