import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { createEvent, ErrorCodes, Headers, ValidationError } from '@herald/core';
import type { Message, Options } from 'amqplib';
import { forwardMessage, reducedForwardMessage } from '../dispatcher/forward-message.ts';
import type { StoredEvent } from '../store/types.ts';
import { fieldTableBytes, HEADERS_DROPPED_HEADER, MAX_HEADER_TABLE_BYTES } from './amqp-table.ts';
import {
  amqpUser,
  clean,
  DEAD_LETTER_BOUNDS,
  deadLetterPublish,
  eventDeadLetter,
  messageDeadLetter,
  minimalDeadLetterPublish,
  sanitizeProperties,
} from './dead-letters.ts';
import { storeFailure } from './store-errors.ts';

// amqplib's own argument handling and frame encoders: what publish() runs before anything is sent.
const require = createRequire(import.meta.url);
const amqplibDir = dirname(require.resolve('amqplib'));
const args = require(join(amqplibDir, 'lib/api_args.js')) as { publish(exchange: string, routingKey: string, options: unknown): unknown };
const defs = require(join(amqplibDir, 'lib/defs.js')) as {
  BasicPublish: number;
  BasicProperties: number;
  encodeMethod(id: number, channel: number, fields: unknown): Buffer;
  encodeProperties(id: number, channel: number, size: number, fields: unknown): Buffer;
};

/** Throws what ch.publish would throw synchronously for this message. */
function encodeAsAmqplib(exchange: string, routingKey: string, options: Options.Publish | Record<string, unknown>): void {
  const fields = args.publish(exchange, routingKey, options);
  defs.encodeMethod(defs.BasicPublish, 1, fields);
  defs.encodeProperties(defs.BasicProperties, 1, 0, fields);
}

const codec = require(join(amqplibDir, 'lib/codec.js')) as {
  encodeTable(buffer: Buffer, table: unknown, offset: number): number;
  decodeFields(slice: Buffer): Record<string, unknown>;
};

/** `table` encoded and decoded by amqplib, as a consumer receives it (a key `__proto__` included). */
function throughAmqplib(table: Record<string, unknown>): Record<string, unknown> {
  const buffer = Buffer.alloc(64 * 1024);
  const end = codec.encodeTable(buffer, table, 0);
  return codec.decodeFields(buffer.subarray(4, end));
}

/** A message as amqplib delivers it. */
function message(routingKey: string, properties: Record<string, unknown>, content = Buffer.from('{}')): Message {
  return {
    content,
    fields: { deliveryTag: 1, redelivered: false, exchange: 'herald.ingest', routingKey, consumerTag: 'c' },
    properties: { headers: {}, ...properties },
  } as unknown as Message;
}

/** Every string in `value` (keys included) is valid UTF-8 without NUL. */
function assertCleanText(value: unknown, path = '$'): void {
  if (typeof value === 'string') {
    assert.ok(!value.includes('\u0000'), `${path} holds a NUL`);
    assert.ok(value.isWellFormed(), `${path} holds a lone surrogate`);
  } else if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) assertCleanText(v, `${path}[${i}]`);
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      assertCleanText(k, `${path} key`);
      assertCleanText(v, `${path}.${k}`);
    }
  }
}

describe('clean: valid UTF-8, no NUL, bounded', () => {
  test('NUL and lone surrogates become U+FFFD; valid text is left as it is', () => {
    assert.equal(clean('a\u0000b', 100), 'a\ufffdb');
    assert.equal(clean('x\ud800y\udc00', 100), 'x\ufffdy\ufffd');
    assert.equal(clean('ok 😀', 100), 'ok 😀');
  });
  test('a long text is cut at a character boundary within its bound and says how long it was', () => {
    for (const unit of ['a', 'é', '€', '😀']) {
      const text = unit.repeat(10_000);
      const out = clean(text, 1000);
      assert.ok(Buffer.byteLength(out) <= 1000, `${unit}: ${Buffer.byteLength(out)} bytes`);
      assert.ok(out.isWellFormed() && !out.includes('\ufffd'), `${unit}: no character split`);
      assert.ok(out.endsWith(`…[${Buffer.byteLength(text)} bytes]`));
      assert.ok(text.startsWith(out.slice(0, out.indexOf('…'))));
    }
  });
});

describe('sanitizeProperties', () => {
  test('NUL and lone surrogates in names and values, nested tables and arrays; Buffers as base64 with a marker', () => {
    const props = sanitizeProperties({
      messageId: 'id\u0000',
      headers: {
        'na\u0000me': 'va\u0000lue',
        lone: 'x\udfff',
        nested: { deeper: ['a\u0000', { k: 'v\ud800' }] },
        bin: Buffer.from([0, 1, 2, 255]),
        n: 5,
        big: 12n,
        nan: Number.NaN,
        ts: { '!': 'timestamp', value: 1_700_000_000 },
        dec: { '!': 'decimal', value: { places: 2, digits: 5 } },
        nothing: null,
        flag: true,
      },
    });
    assertCleanText(props);
    const h = props.headers as Record<string, unknown>;
    assert.equal(props.messageId, 'id\ufffd');
    assert.equal(h['na\ufffdme'], 'va\ufffdlue');
    assert.equal(h.lone, 'x\ufffd');
    assert.deepEqual(h.nested, { deeper: ['a\ufffd', { k: 'v\ufffd' }] });
    assert.deepEqual(h.bin, { $base64: Buffer.from([0, 1, 2, 255]).toString('base64'), bytes: 4 });
    assert.equal(h.n, 5);
    assert.equal(h.big, '12');
    assert.equal(h.nan, 'NaN');
    assert.deepEqual(h.ts, { '!': 'timestamp', value: 1_700_000_000 });
    assert.equal(h.nothing, null);
    assert.equal(h.flag, true);
    const note = props.sanitized as { changed: string[] };
    assert.ok(note.changed.includes('messageId'));
    assert.ok(note.changed.some((p) => p.startsWith('headers.na')));
    // What PostgreSQL's jsonb refuses: a \u0000 escape, or a lone surrogate escape.
    const json = JSON.stringify(props);
    assert.ok(!json.includes('\\u0000') && !/\\ud[89a-f]/i.test(json));
  });

  test('huge values are cut to their bound; a big Buffer keeps its first bytes as base64 and its length', () => {
    const props = sanitizeProperties({ headers: { s: 'x'.repeat(100_000), b: Buffer.alloc(30_000, 7), name: 'n'.repeat(400) } });
    const h = props.headers as Record<string, unknown>;
    assert.ok(Buffer.byteLength(h.s as string) <= DEAD_LETTER_BOUNDS.valueBytes);
    const b = h.b as { $base64: string; bytes: number; truncated: boolean };
    assert.equal(b.bytes, 30_000);
    assert.equal(b.truncated, true);
    assert.ok(b.$base64.length <= DEAD_LETTER_BOUNDS.valueBytes);
    assert.ok(Buffer.from(b.$base64, 'base64').every((x) => x === 7));
    assert.ok(Buffer.byteLength(h.name as string) <= DEAD_LETTER_BOUNDS.valueBytes);
  });

  test('the whole JSON stays within its bound: the largest header values go first, and the row says which', () => {
    const headers: Record<string, unknown> = { small: 'keep me' };
    for (let i = 0; i < 20; i++) headers[`big${i}`] = 'y'.repeat(7000 + i * 10);
    const props = sanitizeProperties({ messageId: 'm', headers });
    const bytes = Buffer.byteLength(JSON.stringify(props));
    assert.ok(bytes <= DEAD_LETTER_BOUNDS.propertiesBytes, `${bytes} bytes`);
    const h = props.headers as Record<string, unknown>;
    const note = props.sanitized as { droppedHeaders: string[] };
    assert.equal(h.small, 'keep me');
    assert.ok(note.droppedHeaders.length > 0);
    assert.ok(note.droppedHeaders.includes('big19'), 'the largest dropped first');
    for (const name of note.droppedHeaders) assert.equal(h[name], undefined);
    const kept = Object.keys(h).filter((k) => k.startsWith('big'));
    assert.ok(kept.length > 0, 'only as many as needed are dropped');
    const smallestDropped = Math.min(...note.droppedHeaders.map((n) => Number(n.slice(3))));
    for (const k of kept) assert.ok(Number(k.slice(3)) < smallestDropped);
  });

  test('thousands of small headers: the JSON stays bounded, the note too', () => {
    const headers: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) headers[`h${i}`] = `v${i}`;
    const props = sanitizeProperties({ headers });
    assert.ok(Buffer.byteLength(JSON.stringify(props)) <= DEAD_LETTER_BOUNDS.propertiesBytes);
    const note = props.sanitized as { droppedHeaders: string[]; more: number };
    assert.ok(note.droppedHeaders.length <= DEAD_LETTER_BOUNDS.notedPaths);
    assert.ok(note.more > 0);
  });

  test('nesting deeper than the bound is replaced by a marker; a plain message needs no note', () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 40; i++) deep = { d: deep };
    const props = sanitizeProperties({ headers: { deep } });
    assert.match(JSON.stringify(props), /nested deeper than 16 levels/);
    assert.equal(sanitizeProperties({ messageId: 'm', headers: { a: 'b' } }).sanitized, undefined);
  });
});

describe('dead letters of messages and of events', () => {
  const refused = new ValidationError(ErrorCodes.INVALID_EVENT, 'invalid headers.x: must not contain a NUL character');

  test('a message: every text field sanitized and bounded, the body kept byte for byte', () => {
    const body = Buffer.from([0, 1, 2, 3, 0xff]);
    const msg = message('billing.\u0000x', { messageId: 'm\u0000', headers: { x: 'a\u0000b', [Headers.SUBJECT]: 's\u0000' } }, body);
    const { letter } = messageDeadLetter(msg, refused, 1000);
    assertCleanText(letter);
    assert.equal(letter.body, body);
    assert.equal(letter.routingKey, 'billing.\ufffdx');
    assert.equal(letter.messageId, 'm\ufffd');
    assert.equal(letter.reason, refused.message);
    assert.equal(letter.code, ErrorCodes.INVALID_EVENT);
    assert.equal(letter.at, 1000);
    const note = letter.properties.sanitized as { changed: string[] };
    assert.ok(note.changed.includes('routingKey') && note.changed.includes('messageId'));
  });

  test('a reason past its bound is cut', () => {
    const { letter } = messageDeadLetter(message('a.b', {}), new Error('r'.repeat(50_000)));
    assert.ok(Buffer.byteLength(letter.reason) <= DEAD_LETTER_BOUNDS.reasonBytes);
  });

  test('an event the store refused: built from the event, its AMQP form in the properties', () => {
    const event = createEvent({ sender: 'billing', type: 'invoice.paid', data: { a: 1 }, subject: 's', headers: { k: 'v' } });
    const { letter, source } = eventDeadLetter(event, new Error('the store refused the event: x (22021)'), {
      exchange: 'herald.ingest',
      routingKey: 'billing.invoice.paid',
    });
    assert.equal(letter.messageId, event.id);
    assert.equal(letter.routingKey, 'billing.invoice.paid');
    assert.deepEqual(letter.body, event.data);
    const h = letter.properties.headers as Record<string, unknown>;
    assert.equal(h.k, 'v');
    assert.equal(h[Headers.SUBJECT], 's');
    assert.equal(h[Headers.TIME], event.time);
    assert.equal(letter.properties.appId, 'billing');
    assert.equal(source.routingKey, 'billing.invoice.paid');
  });
});

test('a header named __proto__ (amqplib decodes it by assignment: the table then inherits from a Buffer) once crashed the hub', () => {
  for (const value of [Buffer.from([1, 2, 3]), [1, 2], { nested: 'x' }]) {
    const proto = Object.defineProperty({ k: 'v' }, '__proto__', { value, enumerable: true });
    const headers = throughAmqplib({ outer: proto, ...proto });
    if (Buffer.isBuffer(value))
      assert.ok(headers instanceof Uint8Array && Buffer.isBuffer(headers), 'the trap: a table that passes for bytes');
    const pending = messageDeadLetter(message('a.b', { headers }), new Error('bad'));
    assert.equal(pending.letter.reason, 'bad');
    assert.equal((pending.letter.properties.headers as Record<string, unknown>).k, 'v');
    assert.equal(((pending.letter.properties.headers as Record<string, unknown>).outer as Record<string, unknown>).k, 'v');
    JSON.stringify(pending.letter);
    const pub = deadLetterPublish(pending);
    assert.equal(pub.options.headers?.[Headers.DEAD_REASON], 'bad');
    assert.ok(fieldTableBytes(headers) > 0);
  }
});

describe('the publish to herald.dead always encodes', () => {
  test('ordinary headers travel with the dead-letter headers', () => {
    const pending = messageDeadLetter(message('a.b', { messageId: 'm', appId: 'a', headers: { k: 'v', n: 1 } }), new Error('bad'));
    const pub = deadLetterPublish(pending);
    assert.equal(pub.headersDropped, false);
    assert.equal(pub.options.headers?.k, 'v');
    assert.equal(pub.options.headers?.[Headers.DEAD_REASON], 'bad');
    assert.equal(pub.options.messageId, 'm');
    encodeAsAmqplib('herald.dead', pub.routingKey, pub.options);
  });

  test('100 KB of original headers (RabbitMQ takes up to its frame_max): only the dead-letter headers go, marked', () => {
    const headers: Record<string, unknown> = {};
    for (let i = 0; i < 10; i++) headers[`h${i}`] = 'z'.repeat(10_000);
    const msg = message('a.b', { headers });
    assert.throws(() => encodeAsAmqplib('herald.dead', 'a.b', { headers }), RangeError, 'amqplib refuses the original headers');
    const pub = deadLetterPublish(messageDeadLetter(msg, new Error('too big')));
    assert.equal(pub.headersDropped, true);
    assert.equal(pub.options.headers?.[HEADERS_DROPPED_HEADER], 'true');
    assert.equal(pub.options.headers?.h0, undefined);
    assert.equal(pub.options.headers?.[Headers.DEAD_REASON], 'too big');
    encodeAsAmqplib('herald.dead', pub.routingKey, pub.options);
  });

  test('short strings over 255 bytes (invalid UTF-8 read back as U+FFFD grows) are left out; so are non-strings', () => {
    const long = '\ufffd'.repeat(200); // 600 bytes
    const msg = message(`a.${long}`, { messageId: long, appId: long, type: long, contentType: long, correlationId: long, timestamp: -5 });
    const pub = deadLetterPublish(messageDeadLetter(msg, new Error('x')));
    for (const k of ['messageId', 'appId', 'type', 'contentType', 'correlationId', 'timestamp'] as const)
      assert.equal(pub.options[k], undefined, k);
    assert.ok(Buffer.byteLength(pub.routingKey) <= 255);
    encodeAsAmqplib('herald.dead', pub.routingKey, pub.options);
  });

  test('header values amqplib cannot write again (a bigint, a name of 300 bytes) make the headers drop', () => {
    for (const headers of [{ b: 10n }, { ['n'.repeat(300)]: 1 }, { x: { '!': 'timestamp', value: 2 ** 64 } }]) {
      const pub = deadLetterPublish(messageDeadLetter(message('a.b', { headers }), new Error('x')));
      assert.equal(pub.headersDropped, true);
      encodeAsAmqplib('herald.dead', pub.routingKey, pub.options);
    }
  });

  test('a dead letter the store refused says so in its reason; the minimal form encodes too', () => {
    const pending = messageDeadLetter(message('a.b', {}), new Error('bad'));
    const pub = deadLetterPublish(pending, 'invalid byte sequence (22021)', 'herald-hub');
    assert.match(String(pub.options.headers?.[Headers.DEAD_REASON]), /bad; not kept in dead_letters: invalid byte sequence/);
    assert.equal(pub.options.headers?.[Headers.DEAD_STORED], 'false', 'marked as not kept: the hub keeps it from herald.dead, as its own');
    assert.equal(pub.options.userId, 'herald-hub', "under the hub's user_id, which the intake trusts the mark by");
    const minimal = minimalDeadLetterPublish(pending, 'refused', 'herald-hub');
    assert.equal(minimal.options.userId, 'herald-hub');
    assert.equal(minimal.options.headers?.[Headers.DEAD_STORED], 'false');
    assert.deepEqual(
      Object.keys(minimal.options.headers ?? {}).sort(),
      [
        HEADERS_DROPPED_HEADER,
        Headers.DEAD_CODE,
        Headers.DEAD_REASON,
        Headers.ATTEMPTS,
        Headers.FIRST_FAILED_AT,
        Headers.LAST_FAILED_AT,
        Headers.DEAD_STORED,
        Headers.ORIGINAL_EXCHANGE,
        Headers.ORIGINAL_ROUTING_KEY,
      ].sort(),
    );
    assert.equal(minimal.options.headers?.[Headers.LAST_FAILED_AT], pending.letter.at);
    encodeAsAmqplib('herald.dead', minimal.routingKey, minimal.options);
  });
});

describe('forwards of stored events always encode', () => {
  const stored = (over: Partial<StoredEvent>): StoredEvent => ({
    ...createEvent({ sender: 'billing', type: 'invoice.paid', data: {} }),
    offset: 7n,
    storedAt: 0,
    ...over,
  });

  test('small headers: exactly toAmqp', () => {
    const m = forwardMessage(stored({ headers: { a: 'b' }, subject: 's' }), 'r1');
    assert.equal(m.dropped, undefined);
    assert.equal(m.properties.headers?.a, 'b');
    assert.equal(m.properties.headers?.[Headers.OFFSET], '7');
    assert.equal(m.properties.headers?.[Headers.REPLAY], 'r1');
  });

  test('headers past 64 KiB as encoded (30 KB of U+FFFD is 90 KB), or a name of 300 bytes: forwarded without them, marked', () => {
    const cases: Record<string, string>[] = [{ bin: '\ufffd'.repeat(30_000) }, { ['n'.repeat(300)]: 'v' }, { a: 'x'.repeat(70_000) }];
    for (const headers of cases) {
      const event = stored({ headers, subject: 'keep', causationId: 'c' });
      const m = forwardMessage(event, undefined);
      assert.ok(m.dropped, 'headers dropped');
      const h = m.properties.headers ?? {};
      assert.equal(h[HEADERS_DROPPED_HEADER], 'true');
      assert.equal(h[Headers.OFFSET], '7');
      assert.equal(h[Headers.SUBJECT], 'keep');
      assert.equal(h[Headers.CAUSATION_ID], 'c');
      assert.equal(h[Headers.TIME], event.time);
      assert.ok(fieldTableBytes(h) <= MAX_HEADER_TABLE_BYTES);
      encodeAsAmqplib('herald.events', m.routingKey, m.properties as Record<string, unknown>);
    }
  });

  test('the reduced form leaves out what no longer fits: a huge subject, a long correlation id, a negative time', () => {
    const m = reducedForwardMessage(stored({ subject: 's'.repeat(70_000), correlationId: 'c'.repeat(300), time: -1000 }), undefined, 'x');
    assert.equal(m.properties.headers?.[Headers.SUBJECT], undefined);
    assert.equal(m.properties.correlationId, undefined);
    assert.equal(m.properties.timestamp, undefined);
    encodeAsAmqplib('herald.events', m.routingKey, m.properties as Record<string, unknown>);
  });
});

test('storeFailure: the data is refused (22, 54, 23 but 23505, encoding errors) or the store is unavailable (the rest)', () => {
  const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code });
  for (const code of ['22021', '22P05', '22P02', '22008', '54000', '23502', '23514'])
    assert.equal(storeFailure(pgError(code)), 'refused', code);
  for (const code of ['23505', '57P01', '08006', '08003', '53300', '53100', '40001', '42P01', 'XX000'])
    assert.equal(storeFailure(pgError(code)), 'unavailable', code);
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'])
    assert.equal(storeFailure(Object.assign(new Error(code), { code })), 'unavailable', code);
  assert.equal(storeFailure(new Error('Connection terminated unexpectedly')), 'unavailable');
  assert.equal(storeFailure(new Error('timeout exceeded when trying to connect')), 'unavailable');
  assert.equal(storeFailure(new ValidationError(ErrorCodes.CONFLICT, 'lease lost')), 'unavailable');
  assert.equal(storeFailure(new TypeError('Do not know how to serialize a BigInt')), 'refused');
  assert.equal(storeFailure(new RangeError('Invalid string length')), 'refused');
  assert.equal(storeFailure(Object.assign(new TypeError('bad arg'), { code: 'ERR_INVALID_ARG_TYPE' })), 'refused');
  assert.equal(storeFailure(undefined), 'unavailable');
});

test("amqpUser: the user an AMQP URL logs in as (decoded), guest when it names none, as amqplib's default", () => {
  assert.equal(amqpUser('amqp://herald%2Dhub:secret@rabbit:5672/prod'), 'herald-hub');
  assert.equal(amqpUser('amqps://svc%40corp:pw@rabbit/'), 'svc@corp');
  assert.equal(amqpUser('amqp://rabbit:5672'), 'guest');
  assert.equal(amqpUser('not a url'), 'guest');
});
