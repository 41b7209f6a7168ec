import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fieldTableBytes, isEncodingError, isShortString, MAX_HEADER_TABLE_BYTES } from './amqp-table.ts';

// amqplib's own codec, the reference the size function follows (not exported: loaded by path).
const require = createRequire(import.meta.url);
const amqplibDir = dirname(require.resolve('amqplib'));
const codec = require(join(amqplibDir, 'lib/codec.js')) as { encodeTable(buf: Buffer, table: unknown, offset: number): number };

/** What amqplib writes for `table` into a buffer with room to spare, or the error it throws. */
function amqplibBytes(table: unknown): number | Error {
  try {
    return codec.encodeTable(Buffer.alloc(4 * 1024 * 1024), table, 0);
  } catch (err) {
    return err as Error;
  }
}

const encodable: [string, unknown][] = [
  ['a short string', 'hello'],
  ['an empty string', ''],
  ['a multi-byte string', 'ß€😀'],
  ['a string with a NUL', 'a\u0000b'],
  ['a lone surrogate (written as U+FFFD)', 'x\ud800y'],
  ['0 (byte)', 0],
  ['-0', -0],
  ['127 (byte)', 127],
  ['-128 (byte)', -128],
  ['128 (short)', 128],
  ['-129 (short)', -129],
  ['32767 (short)', 32767],
  ['-32768 (short)', -32768],
  ['32768 (int)', 32768],
  ['2^31 - 1 (int)', 2 ** 31 - 1],
  ['-2^31 (int)', -(2 ** 31)],
  ['2^31 (long)', 2 ** 31],
  ['2^50 (long)', 2 ** 50],
  ['2^53 (long)', 2 ** 53],
  ['-2^63 (long)', -(2 ** 63)],
  ['2^63 (double: above a signed long)', 2 ** 63],
  ['1.5 (double)', 1.5],
  ['-0.25 (double)', -0.25],
  ['Infinity (double)', Number.POSITIVE_INFINITY],
  ['true', true],
  ['false', false],
  ['null (void)', null],
  ['an empty Buffer', Buffer.alloc(0)],
  ['a binary Buffer', Buffer.from([0, 255, 128, 1])],
  ['an array', [1, 'two', [3, null], { four: 4 }]],
  ['an empty array', []],
  ['a nested table', { a: { b: { c: 'd' } }, e: [true] }],
  ['a Date (an empty table to amqplib)', new Date(0)],
  ['timestamp', { '!': 'timestamp', value: 1_700_000_000 }],
  ['timestamp as a bigint', { '!': 'timestamp', value: 2n ** 64n - 1n }],
  ['decimal', { '!': 'decimal', value: { places: 2, digits: 12345 } }],
  ['float', { '!': 'float', value: 1.25 }],
  ['double', { '!': 'double', value: 3 }],
  ['float64', { '!': 'float64', value: 3 }],
  ['int8', { '!': 'int8', value: -5 }],
  ['byte', { '!': 'byte', value: 5 }],
  ['uint8', { '!': 'uint8', value: 255 }],
  ['unsignedbyte', { '!': 'unsignedbyte', value: 0 }],
  ['int16', { '!': 'int16', value: -300 }],
  ['short', { '!': 'short', value: 300 }],
  ['uint16', { '!': 'uint16', value: 65535 }],
  ['unsignedshort', { '!': 'unsignedshort', value: 1 }],
  ['int32', { '!': 'int32', value: -70000 }],
  ['int', { '!': 'int', value: 70000 }],
  ['uint32', { '!': 'uint32', value: 2 ** 32 - 1 }],
  ['unsignedint', { '!': 'unsignedint', value: 7 }],
  ['int64', { '!': 'int64', value: 2 ** 60 }],
  ['long as a bigint', { '!': 'long', value: 2n ** 63n - 1n }],
  ['string declared', { '!': 'string', value: 'declared' }],
];

const unencodable: [string, unknown][] = [
  ['NaN', Number.NaN],
  ['-Infinity', Number.NEGATIVE_INFINITY],
  ['a fraction above 2^50 (taken for a long)', 2 ** 50 + 0.5],
  ['below -2^63', -(2 ** 64)],
  ['a bigint', 10n],
  ['a function', () => 1],
  ['a symbol', Symbol('s')],
  ['undefined inside an array', [1, undefined]],
  ['uint8 out of range', { '!': 'uint8', value: 256 }],
  ['int8 out of range', { '!': 'int8', value: 128 }],
  ['uint32 negative', { '!': 'uint32', value: -1 }],
  ['a decimal without digits', { '!': 'decimal', value: { places: 2 } }],
  ['a decimal with 256 places', { '!': 'decimal', value: { places: 256, digits: 1 } }],
  ['a decimal of nothing', { '!': 'decimal', value: undefined }],
  ['a negative timestamp', { '!': 'timestamp', value: -1 }],
  ['a timestamp past 64 bits', { '!': 'timestamp', value: 2n ** 64n }],
  ['an unknown declared type', { '!': 'uuid', value: 'x' }],
  ['a declared string that is a Buffer', { '!': 'string', value: Buffer.from('x') }],
];

describe('fieldTableBytes follows amqplib’s encoding of every field type', () => {
  for (const [what, value] of encodable) {
    test(`${what}: the same size as amqplib writes`, () => {
      const table = { name: value };
      const expected = amqplibBytes(table);
      assert.equal(typeof expected, 'number', `amqplib encodes ${what}`);
      assert.equal(fieldTableBytes(table), expected);
    });
  }
  for (const [what, value] of unencodable) {
    test(`${what}: Infinity, where amqplib throws`, () => {
      const table = { name: value };
      const thrown = amqplibBytes(table);
      assert.ok(
        thrown instanceof Error && isEncodingError(thrown),
        `amqplib throws a TypeError or RangeError for ${what}: ${String(thrown)}`,
      );
      assert.equal(fieldTableBytes(table), Number.POSITIVE_INFINITY);
    });
  }

  test('all the types at once, nested in tables and arrays', () => {
    const table: Record<string, unknown> = {};
    for (const [what, value] of encodable) table[what] = value;
    const nested = { ...table, inner: { ...table, list: Object.values(table) } };
    assert.equal(fieldTableBytes(nested), amqplibBytes(nested));
  });

  test('header names: 255 bytes fit, 256 do not; multi-byte names count in bytes', () => {
    assert.equal(fieldTableBytes({ ['n'.repeat(255)]: 1 }), amqplibBytes({ ['n'.repeat(255)]: 1 }));
    assert.equal(fieldTableBytes({ ['n'.repeat(256)]: 1 }), Number.POSITIVE_INFINITY);
    assert.ok(amqplibBytes({ ['n'.repeat(256)]: 1 }) instanceof RangeError);
    assert.equal(fieldTableBytes({ ['€'.repeat(86)]: 1 }), Number.POSITIVE_INFINITY, '258 bytes of UTF-8');
    assert.equal(fieldTableBytes({ ['€'.repeat(85)]: 1 }), amqplibBytes({ ['€'.repeat(85)]: 1 }));
  });

  test('undefined values are skipped and inherited keys counted, as amqplib does', () => {
    const inherited = Object.create({ up: 'x' }) as Record<string, unknown>;
    inherited.own = 1;
    inherited.gone = undefined;
    assert.equal(fieldTableBytes(inherited), amqplibBytes(inherited));
    assert.equal(fieldTableBytes({}), 4);
  });

  test('huge strings and Buffers: the exact size, with no copy made', () => {
    const big = { s: 'x'.repeat(200_000), b: Buffer.alloc(300_000), u: '😀'.repeat(50_000) };
    assert.equal(fieldTableBytes(big), amqplibBytes(big));
  });

  test('nesting past 100 levels is taken as unencodable (a cycle too)', () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 150; i++) deep = { d: deep };
    assert.equal(fieldTableBytes(deep), Number.POSITIVE_INFINITY);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    assert.equal(fieldTableBytes(cycle), Number.POSITIVE_INFINITY);
    let fine: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 50; i++) fine = { d: fine };
    assert.equal(fieldTableBytes(fine), amqplibBytes(fine));
  });

  test('the limit is amqplib’s: a table of MAX_HEADER_TABLE_BYTES encodes into its buffer, one byte more throws', () => {
    const overhead = fieldTableBytes({ v: '' });
    const exact = { v: 'x'.repeat(MAX_HEADER_TABLE_BYTES - overhead) };
    assert.equal(fieldTableBytes(exact), MAX_HEADER_TABLE_BYTES);
    assert.equal(codec.encodeTable(Buffer.alloc(MAX_HEADER_TABLE_BYTES), exact, 0), MAX_HEADER_TABLE_BYTES);
    const over = { v: `${exact.v}x` };
    assert.equal(fieldTableBytes(over), MAX_HEADER_TABLE_BYTES + 1);
    assert.throws(() => codec.encodeTable(Buffer.alloc(MAX_HEADER_TABLE_BYTES), over, 0), RangeError);
  });
});

test('isShortString: strings of at most 255 bytes of UTF-8', () => {
  assert.ok(isShortString('a'.repeat(255)));
  assert.ok(!isShortString('a'.repeat(256)));
  assert.ok(isShortString('€'.repeat(85)));
  assert.ok(!isShortString('€'.repeat(86)));
  assert.ok(!isShortString(undefined));
  assert.ok(!isShortString(5));
});

test('isEncodingError: amqplib’s encoding refusals, not a closed channel', () => {
  assert.ok(isEncodingError(new TypeError("Field 'messageId' is the wrong type")));
  assert.ok(isEncodingError(new RangeError('Encoded field table exceeds the 65536 byte encoding buffer')));
  const closed = new Error('Channel closed');
  closed.name = 'IllegalOperationError';
  assert.ok(!isEncodingError(closed));
});
