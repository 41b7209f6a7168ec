import { LIMITS } from '@herald/core';
import fc from 'fast-check';

// Hostile values shared by the three edges: what a buggy or malicious client sends. They sit on
// both sides of the limits in core's table (so a limit that moves moves them too) and at the edges
// of what JSON, UTF-8, JavaScript numbers, PostgreSQL and AMQP can carry.

/**
 * A piece of JSON written as it is, for what JSON.stringify cannot produce: numbers beyond a double
 * (`1e309`), integers beyond 2^53 (`9999999999999999999`), nesting deeper than any parser's stack.
 */
export class RawJson {
  constructor(readonly text: string) {}
  /** fast-check prints counterexamples with this, so a report shows the text, not an object. */
  toString(): string {
    return `raw(${this.text.length > 200 ? `${this.text.slice(0, 200)}… (${this.text.length} chars)` : this.text})`;
  }
}

/** JSON text of `value`, writing RawJson as it is. Throws only on a cycle, which no generator makes. */
export function jsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : jsonText(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value)) if (v !== undefined) parts.push(`${JSON.stringify(k)}:${jsonText(v)}`);
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const SHORT = LIMITS.shortStringBytes.value;
const NAME = LIMITS.subscriptionNameChars.value;
const DEPTH = LIMITS.jsonDepth.value;

/** `n` repetitions of `s` (built once per value: the 100 KB strings cost one allocation). */
const rep = (s: string, n: number) => s.repeat(n);

/** Strings that break naive code: NUL, lone surrogates, control and direction characters, limits ± 1, 100 KB. */
export const boundaryString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    '\ud800',
    'x\udfffy',
    '\ud83d',
    '😀',
    'Счёт',
    '請求書',
    '\u202eevil',
    '\ufeffbom',
    '\uffff',
    '\r\n',
    'a\nb',
    '\t',
    '%00',
    '%',
    '../../etc/passwd',
    '..',
    '.',
    '/',
    '?',
    '#',
    '*',
    ':',
    ',',
    '"',
    "'; drop table events; --",
    '<script>',
    'null',
    'undefined',
    'true',
    '0',
    '-1',
    'NaN',
    'Infinity',
    '1e309',
    '9999999999999999999',
    '9223372036854775807',
    '9223372036854775808',
    '18446744073709551616',
    '0x10',
    ' 1',
    '1.5',
  ),
  fc.constantFrom(SHORT - 1, SHORT, SHORT + 1, NAME, NAME + 1, 1000, 1001, 4096, 100_000).map((n) => rep('a', n)),
  // Multi-byte characters put the byte limit and the character limit in different places.
  fc.constantFrom(Math.floor(SHORT / 2), Math.ceil(SHORT / 2) + 1, 50_000).map((n) => rep('é', n)),
  fc.constantFrom(100, 128, 129, 200, 300).map((n) => rep('€', n)),
  fc.integer({ min: 100, max: 300 }).map((n) => rep('n', n)),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);

/** Numbers as JSON values: negative, fractional, 2^53 and 2^63 around, past a double, NaN-ish. */
export const boundaryNumber: fc.Arbitrary<number | RawJson> = fc.oneof(
  fc.constantFrom(
    -1,
    0,
    -0,
    0.5,
    1,
    2 ** 31,
    2 ** 32,
    Number.MAX_SAFE_INTEGER,
    2 ** 53,
    2 ** 63,
    2 ** 64,
    1e21,
    1e308,
    -1e308,
    Number.MIN_VALUE,
    8.64e15,
    9e15,
    LIMITS.maxEventTime.value,
    LIMITS.maxEventTime.value + 1,
  ),
  fc
    .constantFrom(
      '1e309',
      '-1e309',
      '9999999999999999999',
      '9223372036854775807',
      '9223372036854775808',
      '-9223372036854775809',
      '1e-400',
      `1${'0'.repeat(400)}`,
      '-0.0',
      '1E2',
    )
    .map((t) => new RawJson(t)),
  fc.integer(),
  fc.double(),
);

/** Nesting past the depth limit and past a recursive parser's stack (10,000 levels), as raw text. */
export const deepJson: fc.Arbitrary<RawJson> = fc
  .tuple(fc.constantFrom(DEPTH, DEPTH + 1, 1000, 10_000), fc.constantFrom('array', 'object'))
  .map(([n, kind]) => new RawJson(kind === 'array' ? `${rep('[', n)}${rep(']', n)}` : `${rep('{"a":', n)}1${rep('}', n)}`));

/** Any JSON value of a wrong or hostile kind, for a field whatever its declared type. */
export const boundaryJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: boundaryString },
  { weight: 3, arbitrary: boundaryNumber },
  { weight: 1, arbitrary: deepJson },
  {
    weight: 1,
    arbitrary: fc.constantFrom(null, true, false, [], {}, [null], { '': '' }, JSON.parse('{"__proto__":{"polluted":true}}'), {
      constructor: 'x',
    }),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/** One segment of a name: mostly valid, sometimes hostile. */
const segment: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('billing', 'shipping', 'crm', 'invoice', 'paid', 'parcel', 'a', 'x-y', 'A_1') },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', 'é', '\u0000', '\ud800', '#', '*', 'a b', 'a:b', 'a,b', '%2e') },
);

/** A type: dotted segments, up to past a 255-byte routing key. */
export const typeString: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('.')) },
  { weight: 1, arbitrary: fc.constantFrom(40, 127, 128, 200).map((n) => Array.from({ length: n }, (_, i) => `s${i % 10}`).join('.')) },
  { weight: 1, arbitrary: boundaryString },
);

/** A sender: one segment, sometimes past 64 characters or hostile. */
export const senderString: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: segment },
  { weight: 1, arbitrary: fc.constantFrom(64, 65, 255).map((n) => rep('s', n)) },
  { weight: 1, arbitrary: boundaryString },
);

/** One selector pattern `sender:type`, with wildcards and the backtracking shape (`#.*.#.*…`). */
const pattern: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('*:*', 'billing:*', '*:invoice.paid', 'billing:invoice.#', '*:#', 'shipping:parcel.*') },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.oneof(senderString, fc.constant('*')),
        fc.array(fc.oneof(segment, fc.constantFrom('*', '#')), { minLength: 1, maxLength: 6 }),
      )
      .map(([s, t]) => `${s}:${t.join('.')}`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(20, 40, 64, 128, 129, 600), fc.constantFrom(['#', '*'], ['#'], ['*', 'a', '#']))
      .map(([n, cycle]) => `*:${Array.from({ length: n }, (_, i) => cycle[i % cycle.length]).join('.')}`),
  },
  { weight: 1, arbitrary: fc.constantFrom('', ':', 'a:', ':b', 'a', 'a:b:c', '*:*.', '*:.a', ' *:*', '*: *', '\u0000:x', 'a:\ud800') },
);

const PATTERNS = LIMITS.selectorPatterns.value;

/** A selector as a list of patterns: a few, up to the limit ± 1, or 40,000. */
export const selectorList: fc.Arbitrary<string[]> = fc.oneof(
  { weight: 8, arbitrary: fc.array(pattern, { minLength: 1, maxLength: 4 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(PATTERNS, PATTERNS + 1, 1000, 40_000).map((n) => Array.from({ length: n }, (_, i) => `s${i}:t${i % 7}.#`)),
  },
  { weight: 1, arbitrary: fc.constantFrom<string[]>([], [''], ['*:*', '*:*']) },
);

/** A selector as REST takes it in a query or body string: comma-separated. */
export const selectorString: fc.Arbitrary<string> = fc.oneof(
  { weight: 9, arbitrary: selectorList.map((l) => l.join(',')) },
  { weight: 1, arbitrary: boundaryString },
);

/** An ISO 8601 time: valid, at the window's ends, past a Date, without a zone, impossible. */
export const timeString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.date({ min: new Date(0), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '1970-01-01T00:00:00Z',
      '1969-12-31T23:59:59.999Z',
      '0000-01-01T00:00:00Z',
      '9999-12-31T23:59:59.999Z',
      '10000-01-01T00:00:00Z',
      '+275760-09-13T00:00:00.000Z',
      '+275760-09-13T00:00:00.001Z',
      '-271821-04-20T00:00:00Z',
      '2026-02-30T00:00:00Z',
      '2026-01-01T25:00:00Z',
      '2026-01-01T00:00:00',
      '2026-01-01T00:00:00+99:99',
      '2026-01-01',
      '2026-01-01T00:00:00.123456789Z',
    ),
  },
  { weight: 1, arbitrary: boundaryString },
);

/** An offset or count as a decimal string: valid, 2^63 - 1, 2^63, 2^64, negative, not a number. */
export const offsetString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.bigInt({ min: 0n, max: 100n }).map(String) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '0',
      '-1',
      '9007199254740993',
      '9223372036854775807',
      '9223372036854775808',
      '9999999999999999999',
      '18446744073709551615',
      '18446744073709551616',
      '00000000000000000001',
      '1e3',
      '0x1',
      '+1',
    ),
  },
  { weight: 1, arbitrary: boundaryString },
);

/** A subscription-like name: valid, on and past the limit, 100–300 characters, hostile. */
export const nameString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,24}$/) },
  { weight: 2, arbitrary: fc.integer({ min: 100, max: 300 }).map((n) => `n${rep('a', n - 1)}`) },
  { weight: 1, arbitrary: fc.constantFrom(NAME - 1, NAME, NAME + 1).map((n) => rep('s', n)) },
  { weight: 1, arbitrary: boundaryString },
);

/** Bytes as the fuzzers describe them: small ones literally, large ones by a fill (printable, cheap to shrink). */
export type BytesSpec = { readonly bytes: Uint8Array } | { readonly fill: number; readonly length: number };

/** The Buffer a BytesSpec stands for. */
export function bytesOf(spec: BytesSpec): Buffer {
  return 'bytes' in spec ? Buffer.from(spec.bytes) : Buffer.alloc(spec.length, spec.fill);
}

/** Binary data: random bytes (invalid UTF-8 most of the time), or a fill up to `max` bytes. */
export function bytesSpec(sizes: readonly number[]): fc.Arbitrary<BytesSpec> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => ({ bytes })) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(new Uint8Array([0xff, 0xfe]), new Uint8Array([0xc0, 0x80]), new Uint8Array([0xed, 0xa0, 0x80]))
        .map((bytes) => ({ bytes })),
    },
    { weight: 1, arbitrary: fc.record({ fill: fc.constantFrom(0, 0x41, 0xff), length: fc.constantFrom(...sizes) }) },
  );
}

/**
 * Valid values, for the fields an input should get right so that it reaches the code behind the
 * first check; mutations then break one field at a time.
 */
export const good = {
  sender: fc.oneof(fc.constantFrom('billing', 'shipping', 'crm'), fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/)),
  type: fc
    .array(fc.oneof(fc.constantFrom('invoice', 'paid', 'parcel', 'sent'), fc.stringMatching(/^[A-Za-z0-9_-]{1,10}$/)), {
      minLength: 1,
      maxLength: 4,
    })
    .map((s) => s.join('.')),
  selectorList: fc.array(fc.constantFrom('*:*', 'billing:*', '*:invoice.paid', 'billing:invoice.#', 'shipping:parcel.*', 'crm:#'), {
    minLength: 1,
    maxLength: 3,
  }),
  name: fc.stringMatching(/^[A-Za-z0-9_.-]{1,40}$/),
  time: fc.date({ min: new Date(0), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  offset: fc.bigInt({ min: 0n, max: 100n }).map(String),
};
