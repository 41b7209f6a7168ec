import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { bodyJson, checkEvent, createEvent, forwardHeaderBytes, fromAmqp, Headers, toAmqp } from './envelope.ts';
import { ValidationError } from './errors.ts';
import { deeperThan, jsonTextDeeperThan, LIMITS, MAX_OFFSET, parseOffset, textProblem } from './limits.ts';
import { bindingKeys, compileMatcher, parseSelector } from './selector.ts';

/** Asserts a ValidationError with this code whose details name `parameter`. */
function refused(fn: () => unknown, code: string, parameter?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ValidationError, `expected a ValidationError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (parameter !== undefined) assert.equal(err.details?.parameter, parameter, err.message);
    return true;
  });
}

const base = { sender: 'billing', type: 'invoice.paid', data: { n: 1 } };

describe('text', () => {
  test('NUL, lone surrogates, wrong types and too many bytes are problems; the rest is fine', () => {
    assert.equal(textProblem('héllo ✓'), undefined);
    assert.match(textProblem('a\u0000b') ?? '', /NUL/);
    assert.match(textProblem('a\ud800b') ?? '', /UTF-8/);
    assert.match(textProblem(5) ?? '', /string/);
    assert.match(textProblem('é'.repeat(128), 255) ?? '', /256/);
    assert.equal(textProblem('é'.repeat(127), 255), undefined);
  });
});

describe('checkEvent at every field (createEvent: SDK, REST, gRPC)', () => {
  test('a NUL in the subject, a header or a correlation id is refused naming the field', () => {
    refused(() => createEvent({ ...base, subject: 'a\u0000b' }), 'INVALID_EVENT', 'subject');
    refused(() => createEvent({ ...base, headers: { tenant: 'a\u0000' } }), 'INVALID_EVENT', 'headers.tenant');
    refused(() => createEvent({ ...base, headers: { 'a\u0000': 'x' } }), 'INVALID_EVENT', 'headers');
    refused(() => createEvent({ ...base, correlationId: 'x\ud800' }), 'INVALID_EVENT', 'correlationId');
    refused(() => createEvent({ ...base, contentType: 'application/json\u0000' }), 'INVALID_EVENT', 'contentType');
  });

  test('AMQP short strings over 255 bytes are refused', () => {
    refused(() => createEvent({ ...base, correlationId: 'c'.repeat(256) }), 'INVALID_EVENT', 'correlationId');
    refused(() => createEvent({ ...base, causationId: 'c'.repeat(256) }), 'INVALID_EVENT', 'causationId');
    refused(() => createEvent({ ...base, contentType: `text/${'x'.repeat(251)}` }), 'INVALID_EVENT', 'contentType');
    refused(() => createEvent({ ...base, headers: { ['h'.repeat(256)]: 'v' } }), 'INVALID_EVENT', 'headers');
    assert.ok(createEvent({ ...base, correlationId: 'c'.repeat(255), headers: { ['h'.repeat(255)]: 'v' } }));
  });

  test('headers that would not fit the forwarded header table are refused; up to the limit they are taken', () => {
    refused(() => createEvent({ ...base, headers: { big: 'v'.repeat(70_000) } }), 'INVALID_EVENT', 'headers');
    refused(() => createEvent({ ...base, subject: 's'.repeat(66_000) }), 'INVALID_EVENT', 'headers');
    const room = LIMITS.headerTableBytes.value - forwardHeaderBytes({ headers: { big: '' } });
    const fits = createEvent({ ...base, headers: { big: 'v'.repeat(room) } });
    assert.equal(forwardHeaderBytes(fits), LIMITS.headerTableBytes.value);
    refused(() => createEvent({ ...base, headers: { big: 'v'.repeat(room + 1) } }), 'INVALID_EVENT', 'headers');
  });

  test('the header table as forwarded is what amqplib would encode, offset and replay id included', async () => {
    // amqplib's own encoder (the hub's client library; not a dependency of core, so read by path).
    const codec = new URL('../../../node_modules/amqplib/lib/codec.js', import.meta.url).pathname;
    const { encodeTable } = createRequire(import.meta.url)(codec) as { encodeTable: (b: Buffer, v: unknown, o: number) => number };
    const e = createEvent({ ...base, subject: 'sübject', causationId: 'c', headers: { tenant: 'acme', ü: 'ñ' } });
    const { properties } = toAmqp(e, { offset: MAX_OFFSET, replay: '0190a8c4-0000-7000-8000-000000000000' });
    assert.equal(encodeTable(Buffer.alloc(70_000), properties.headers, 0), forwardHeaderBytes(e));
  });

  test('times outside 1970 … 9999 are refused, the edges taken', () => {
    refused(() => createEvent({ ...base, time: 9e15 }), 'INVALID_EVENT', 'time');
    refused(() => createEvent({ ...base, time: -1 }), 'INVALID_EVENT', 'time');
    refused(() => createEvent({ ...base, time: Number.NaN }), 'INVALID_EVENT', 'time');
    assert.equal(createEvent({ ...base, time: LIMITS.maxEventTime.value }).time, LIMITS.maxEventTime.value);
    assert.equal(createEvent({ ...base, time: 0 }).time, 0);
  });

  test('contract headers cannot be set as extra headers', () => {
    refused(() => createEvent({ ...base, headers: { [Headers.OFFSET]: '1' } }), 'INVALID_EVENT', 'headers');
  });
});

describe('fromAmqp (ingest) applies the same limits', () => {
  const msg = (headers: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    routingKey: 'billing.invoice.paid',
    content: Buffer.from('{}'),
    properties: { headers, ...extra },
  });

  test('x-herald-time past what a Date holds, negative, or not a number is refused', () => {
    refused(() => fromAmqp(msg({ [Headers.TIME]: 9e15 })), 'INVALID_EVENT', `header ${Headers.TIME}`);
    refused(() => fromAmqp(msg({ [Headers.TIME]: -5 })), 'INVALID_EVENT');
    refused(() => fromAmqp(msg({ [Headers.TIME]: 'soon' })), 'INVALID_EVENT');
    refused(() => fromAmqp(msg({}, { timestamp: 9e12 })), 'INVALID_EVENT', 'timestamp');
    assert.equal(fromAmqp(msg({ [Headers.TIME]: '1700000000123' })).time, 1_700_000_000_123);
  });

  test('a binary header value is refused, not turned into replacement characters that outgrow the table', () => {
    const binary = Buffer.alloc(30_000, 0xff);
    refused(() => fromAmqp(msg({ blob: binary })), 'INVALID_EVENT', 'headers.blob');
    refused(() => fromAmqp(msg({ nested: { blob: binary } })), 'INVALID_EVENT', 'headers.nested');
    assert.equal(fromAmqp(msg({ text: Buffer.from('ok') })).headers.text, 'ok');
  });

  test('a NUL in a header value or the subject is refused; bigints in tables are shown in decimal', () => {
    refused(() => fromAmqp(msg({ [Headers.SUBJECT]: 'a\u0000b' })), 'INVALID_EVENT', 'subject');
    refused(() => fromAmqp(msg({ h: 'a\u0000b' })), 'INVALID_EVENT', 'headers.h');
    assert.equal(fromAmqp(msg({ t: { n: 2n ** 70n } })).headers.t, `{"n":"${2n ** 70n}"}`);
  });

  test('an x-herald-offset that is not an offset is refused', () => {
    refused(() => fromAmqp(msg({ [Headers.OFFSET]: '99999999999999999999' })), 'INVALID_EVENT');
    refused(() => fromAmqp(msg({ [Headers.OFFSET]: '-1' })), 'INVALID_EVENT');
  });
});

describe('offsets and depth', () => {
  test('offsets: 0 … 2^63 - 1 as decimal strings or exact numbers; the rest refused naming the field', () => {
    assert.equal(parseOffset('after', '9223372036854775807'), MAX_OFFSET);
    assert.equal(parseOffset('after', 0), 0n);
    for (const bad of ['9999999999999999999', '9223372036854775808', '-1', 'abc', '', 1e20, -1, 1.5, null, '1e3'])
      refused(() => parseOffset('after', bad), 'INVALID_REQUEST', 'after');
  });

  test('depth is found without recursion, for values and for raw text', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    assert.equal(jsonTextDeeperThan(deep), true);
    assert.equal(deeperThan(JSON.parse(deep)), true);
    assert.equal(jsonTextDeeperThan('{"a": "[[[[[[[[", "b": [[1]]}', 3), false);
    assert.equal(deeperThan({ a: [{ b: 1 }] }, 3), false);
    assert.equal(deeperThan({ a: [{ b: [] }] }, 3), true);
  });

  test('a stored body too deep to show as JSON is shown as base64, never thrown', () => {
    const deep = Buffer.from('['.repeat(10_000) + ']'.repeat(10_000));
    assert.deepEqual(bodyJson('application/json', deep), { dataBase64: deep.toString('base64') });
    const notUtf8 = Buffer.from([0x22, 0xff, 0x22]);
    assert.deepEqual(bodyJson('application/json', notUtf8), { dataBase64: notUtf8.toString('base64') });
  });
});

describe('selector limits and the matcher', () => {
  test('too many patterns is refused at once, before parsing them', () => {
    const t0 = performance.now();
    refused(() => parseSelector(Array.from({ length: 40_000 }, (_, i) => `s${i}:*`)), 'INVALID_SELECTOR');
    refused(() => parseSelector(Array.from({ length: 40_000 }, (_, i) => `s${i}:*`).join(',')), 'INVALID_SELECTOR');
    assert.ok(performance.now() - t0 < 500);
    assert.equal(parseSelector(Array.from({ length: LIMITS.selectorPatterns.value }, (_, i) => `s${i}:*`)).patterns.length, 100);
  });

  test('too many segments, or types longer than a routing key, are refused', () => {
    refused(() => parseSelector(`*:${Array.from({ length: 129 }, () => 'a').join('.')}`), 'INVALID_SELECTOR');
    refused(() => parseSelector(`*:${'a'.repeat(256)}`), 'INVALID_SELECTOR');
    // The binding key <sender>.<type> must fit too (a type of 250 bytes once wedged the receivers' channel).
    refused(() => parseSelector(`billing:${'a'.repeat(250)}`), 'INVALID_SELECTOR');
    refused(() => parseSelector(`*:${'a'.repeat(254)}`), 'INVALID_SELECTOR');
    assert.equal(bindingKeys(`*:${'a'.repeat(253)}`)[0]?.length, 255);
    assert.equal(bindingKeys(`${'s'.repeat(64)}:${'a'.repeat(190)}`)[0]?.length, 255);
    refused(
      () => parseSelector(Array.from({ length: 20 }, (_, i) => `*:#.${Array.from({ length: 30 }, () => '*').join('.')}.x${i}`)),
      'INVALID_SELECTOR',
    );
  });

  test('adversarial wildcards against 40-segment types match in microseconds (a backtracking matcher takes seconds)', () => {
    const alternating = Array.from({ length: 63 }, (_, i) => (i % 2 === 0 ? '#' : '*')).join('.');
    const match = compileMatcher([`*:${alternating}.c`, '*:#.a.#.a.#.a.#.a.#.a.#.b']);
    const near = [...Array.from({ length: 39 }, () => 'a'), 'x'].join('.');
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) assert.equal(match('s', near), false);
    assert.equal(match('s', [...Array.from({ length: 39 }, () => 'a'), 'c'].join('.')), true);
    assert.ok(performance.now() - t0 < 200, `1,000 matches took ${performance.now() - t0} ms`);
  });
});

describe('docs', () => {
  test('docs/reliability.md lists every limit with its value', () => {
    const doc = readFileSync(new URL('../../../docs/reliability.md', import.meta.url), 'utf8');
    for (const [name, limit] of Object.entries(LIMITS)) {
      const value = limit.value.toLocaleString('en-US');
      assert.ok(doc.includes(`\`${name}\``) && doc.includes(value), `docs/reliability.md should list ${name} = ${value}`);
    }
  });
});

test('checkEvent is what createEvent and fromAmqp run: an event read back from its own forward passes', () => {
  const e = createEvent({ ...base, subject: 's', headers: { a: 'b' } });
  const back = fromAmqp(toAmqp(e, { offset: 7n }));
  checkEvent(back);
  assert.deepEqual(back.headers, { a: 'b' });
});
