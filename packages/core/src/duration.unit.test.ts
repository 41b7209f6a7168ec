import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDuration } from './duration.ts';
import { ValidationError } from './errors.ts';

/** Asserts one INVALID_CONFIG line naming `what`, matching `expected`. */
function refused(text: string, expected: RegExp, options: Parameters<typeof parseDuration>[2] = {}, what = '--ttl'): void {
  assert.throws(
    () => parseDuration(text, what, options),
    (err: unknown) => {
      assert.ok(err instanceof ValidationError, `expected a ValidationError, got ${String(err)}`);
      assert.equal(err.code, 'INVALID_CONFIG');
      assert.ok(err.message.startsWith(`invalid ${what} `), err.message);
      assert.match(err.message, expected);
      assert.ok(!err.message.includes('\n') && err.message.length < 200, err.message);
      return true;
    },
    JSON.stringify(text),
  );
}

describe('parseDuration', () => {
  test('units and combinations, largest first, in milliseconds', () => {
    assert.equal(parseDuration('500ms', '--x'), 500);
    assert.equal(parseDuration('30s', '--x'), 30_000);
    assert.equal(parseDuration('5m', '--x'), 300_000);
    assert.equal(parseDuration('1h', '--x'), 3_600_000);
    assert.equal(parseDuration('2d', '--x'), 172_800_000);
    assert.equal(parseDuration('1h30m', '--x'), 5_400_000);
    assert.equal(parseDuration('1m30s500ms', '--x'), 90_500);
    assert.equal(parseDuration('1d2h3m4s5ms', '--x'), 93_784_005);
    assert.equal(parseDuration(' 30s\n', '--x'), 30_000, 'surrounding whitespace is ignored');
    assert.equal(parseDuration('365d', '--x'), 365 * 86_400_000);
  });

  test('a bare number: refused unless the setting says its unit', () => {
    refused('90', /expected a duration such as 500ms, 30s, 5m, 1h or 1h30m$/);
    assert.equal(parseDuration('90', '--ttl', { bare: 's' }), 90_000);
    assert.equal(parseDuration('1500', '--warmup', { bare: 'ms' }), 1500);
    refused('90x', /or a number of seconds$/, { bare: 's' });
    refused('1.5', /expected a duration/, { bare: 's' });
  });

  test('zero only when min is 0; min and max bound the rest, named in the message', () => {
    refused('0s', /must be more than 0, e\.g\. 30s/);
    refused('0', /must be more than 0/, { bare: 's' });
    assert.equal(parseDuration('0', '--idle', { bare: 's', min: 0 }), 0);
    assert.equal(parseDuration('0ms', '--idle', { min: 0 }), 0);
    refused('500ms', /expected at least 1s, e\.g\. 30s$/, { min: 1000 });
    refused('2h', /expected at most 1h, e\.g\. 30s$/, { max: 3_600_000 });
    refused('366d', /expected at most 365d/);
    refused('400d', /expected at most 365d/, { max: 1000 * 86_400_000 }, '--x');
  });

  test('hostile input: one short line naming the flag, never a number', () => {
    const malformed = /expected a duration such as/;
    for (const bad of [
      '',
      '   ',
      'ms',
      's',
      '5',
      '-5s',
      '+5s',
      '5 s',
      '1h 30m',
      '1.5h',
      '.5s',
      '5s.',
      '1e3s',
      '1e309',
      'Infinity',
      '-Infinity',
      'NaN',
      '0x10s',
      '5parsecs',
      '5x',
      '5m3',
      '30m1h',
      '1h1h',
      '5S',
      '5sec',
      '5s\u0000',
      '\u00005s',
      '5\u0000s',
      '５s',
      '٥s',
      '1h30m-',
      '__proto__',
    ]) {
      refused(bad, malformed);
    }
    refused('5parsecs', /^invalid --ttl "5parsecs": expected a duration such as 500ms, 30s, 5m, 1h or 1h30m$/);
    refused('5s\u0000', /"5s\\u0000"/);
  });

  test('very long text is refused at once and shown truncated', () => {
    refused('9'.repeat(1_000_000), /expected a duration such as/, { bare: 's' });
    refused(`${'1'.repeat(60)}s`, /expected at most 365d/);
    refused('1s'.repeat(100_000), /"(1s){30}…": expected a duration/);
    const start = performance.now();
    refused(`${'1'.repeat(63)}x`, /expected a duration/);
    assert.ok(performance.now() - start < 100, 'no backtracking');
  });

  test('non-strings from untyped callers are refused, not coerced', () => {
    for (const bad of [undefined, null, 30, {}, ['30s']]) refused(bad as unknown as string, /expected a duration/);
  });
});
