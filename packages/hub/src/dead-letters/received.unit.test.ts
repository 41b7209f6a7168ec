// What the intake makes of a message on herald.dead: the letter read from its headers and
// sanitized, and the key that keeps a redelivery once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Headers } from '@herald/core';
import type { Message } from 'amqplib';
import { DEAD_LETTER_BOUNDS } from '../ingest/dead-letters.ts';
import { deadLetterKey, hubMark, keptByHub, MAX_KEPT_BODY_BYTES, receivedDeadLetter, UNKNOWN_CODE } from './received.ts';

function message(routingKey: string, properties: Record<string, unknown> = {}, content = Buffer.from('{"a":1}')): Message {
  return {
    fields: { exchange: 'herald.dead', routingKey, deliveryTag: 1, redelivered: false, consumerTag: 'c' },
    properties: { headers: undefined, messageId: undefined, ...properties },
    content,
  } as unknown as Message;
}

const NOW = 1_800_000_000_000;

describe('receivedDeadLetter', () => {
  test("an SDK subscriber's dead letter: reason, code, attempts, first and last failure, queue, exchange", () => {
    const l = receivedDeadLetter(
      message('billing.invoice.paid', {
        messageId: '0190a1b2-0000-7000-8000-000000000001',
        headers: {
          tenant: 'acme',
          [Headers.DEAD_REASON]: 'boom',
          [Headers.DEAD_CODE]: 'HANDLER_FAILED',
          [Headers.ATTEMPTS]: 5,
          [Headers.FIRST_FAILED_AT]: NOW - 1000,
          [Headers.LAST_FAILED_AT]: NOW - 10,
          [Headers.ORIGINAL_EXCHANGE]: 'herald.events',
          [Headers.ORIGINAL_ROUTING_KEY]: 'billing.invoice.paid',
          [Headers.ORIGINAL_QUEUE]: Buffer.from('billing-q'),
        },
      }),
      NOW,
    );
    assert.deepEqual(
      {
        reason: l.reason,
        code: l.code,
        attempts: l.attempts,
        first: l.firstFailedAt,
        last: l.lastFailedAt,
        queue: l.queue,
        exchange: l.exchange,
        routingKey: l.routingKey,
        messageId: l.messageId,
        at: l.at,
      },
      {
        reason: 'boom',
        code: 'HANDLER_FAILED',
        attempts: 5,
        first: NOW - 1000,
        last: NOW - 10,
        queue: 'billing-q',
        exchange: 'herald.events',
        routingKey: 'billing.invoice.paid',
        messageId: '0190a1b2-0000-7000-8000-000000000001',
        at: NOW,
      },
    );
    assert.equal((l.properties.headers as Record<string, unknown>).tenant, 'acme');
    assert.equal(l.body.toString(), '{"a":1}');
  });

  test('no headers at all: a reason that says so, code UNKNOWN, attempts unknown, failed when read', () => {
    const l = receivedDeadLetter(message('x'), NOW);
    assert.match(l.reason, /no reason given/);
    assert.equal(l.code, UNKNOWN_CODE);
    assert.equal(l.attempts, undefined);
    assert.equal(l.firstFailedAt, NOW);
    assert.equal(l.lastFailedAt, NOW);
    assert.equal(l.queue, undefined);
    assert.equal(l.exchange, 'herald.dead');
  });

  test('headers that lie: codes that are not codes, counts and times out of range, first after last', () => {
    for (const [attempts, want] of [
      [-1, undefined],
      [2 ** 40, undefined],
      [1.5, undefined],
      ['7', 7],
      [7n, 7],
      ['many', undefined],
      [{ n: 1 }, undefined],
    ] as const) {
      const l = receivedDeadLetter(message('a.b', { headers: { [Headers.ATTEMPTS]: attempts } }), NOW);
      assert.equal(l.attempts, want, String(attempts));
    }
    for (const code of ['lower', 'A'.repeat(65), 'WITH SPACE', '', 5])
      assert.equal(receivedDeadLetter(message('a.b', { headers: { [Headers.DEAD_CODE]: code } })).code, UNKNOWN_CODE, String(code));
    const times = receivedDeadLetter(
      message('a.b', { headers: { [Headers.FIRST_FAILED_AT]: NOW + 5000, [Headers.LAST_FAILED_AT]: NOW - 5 } }),
      NOW,
    );
    assert.equal(times.lastFailedAt, NOW - 5);
    assert.equal(times.firstFailedAt, NOW - 5, 'never after the last');
    const far = receivedDeadLetter(message('a.b', { headers: { [Headers.LAST_FAILED_AT]: 9e18, [Headers.FIRST_FAILED_AT]: -3 } }), NOW);
    assert.deepEqual([far.firstFailedAt, far.lastFailedAt], [NOW, NOW]);
  });

  test('NUL bytes, lone surrogates and bytes that are not UTF-8 come out valid text; the body stays byte for byte', () => {
    const body = Buffer.from([0x00, 0xff, 0xfe, 0x80]);
    const l = receivedDeadLetter(
      message(
        'a\u0000b.c',
        {
          messageId: 'id\u0000x',
          headers: {
            [Headers.DEAD_REASON]: Buffer.from([0x62, 0x00, 0xff, 0x61]),
            [Headers.ORIGINAL_QUEUE]: 'q\ud800',
            'bad\u0000name': 'v\u0000',
            bin: Buffer.from([0xff, 0x00]),
          },
        },
        body,
      ),
      NOW,
    );
    const texts = [l.reason, l.routingKey, l.messageId, l.queue, JSON.stringify(l.properties)];
    for (const t of texts) {
      assert.ok(!String(t).includes('\u0000'), `no NUL in ${t}`);
      assert.ok(String(t).isWellFormed(), `well formed: ${t}`);
    }
    assert.deepEqual(l.body, body);
    assert.deepEqual((l.properties.headers as Record<string, unknown>).bin, { $base64: '/wA=', bytes: 2 });
  });

  test('long texts are cut to their bounds; the properties stay within theirs', () => {
    const huge = 'r'.repeat(100_000);
    const headers: Record<string, unknown> = { [Headers.DEAD_REASON]: huge, [Headers.ORIGINAL_QUEUE]: huge };
    for (let i = 0; i < 20; i++) headers[`h${i}`] = 'v'.repeat(8000);
    const l = receivedDeadLetter(message('a.b', { headers }), NOW);
    assert.ok(Buffer.byteLength(l.reason) <= DEAD_LETTER_BOUNDS.reasonBytes);
    assert.ok(Buffer.byteLength(l.queue ?? '') <= DEAD_LETTER_BOUNDS.shortBytes);
    assert.ok(Buffer.byteLength(JSON.stringify(l.properties)) <= DEAD_LETTER_BOUNDS.propertiesBytes);
    assert.ok((l.properties.sanitized as { droppedHeaders: string[] }).droppedHeaders.length > 0);
  });
});

describe('deadLetterKey and keptByHub', () => {
  const props = { messageId: 'm', headers: { a: 1, [Headers.LAST_FAILED_AT]: NOW } };

  test('the same message has the same key, a redelivery too (x-delivery-count aside); any difference changes it', () => {
    const key = deadLetterKey(message('a.b', props));
    assert.equal(deadLetterKey(message('a.b', structuredClone(props))), key);
    assert.equal(deadLetterKey(message('a.b', { ...props, headers: { ...props.headers, 'x-delivery-count': 3 } })), key);
    const others = [
      message('a.c', props),
      message('a.b', { ...props, messageId: 'n' }),
      message('a.b', { ...props, headers: { ...props.headers, [Headers.LAST_FAILED_AT]: NOW + 1 } }),
      message('a.b', { ...props, headers: { ...props.headers, a: '1' } }),
      message('a.b', props, Buffer.from('{"a":2}')),
    ];
    assert.equal(new Set([key, ...others.map(deadLetterKey)]).size, others.length + 1);
  });

  test('deep, wide and binary headers still make a key', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 5000; i++) deep = { d: deep };
    const a = deadLetterKey(message('a.b', { headers: { deep, bin: Buffer.alloc(10_000, 1), when: new Date(0), big: 2n ** 70n } }));
    assert.match(a, /^[0-9a-f]{64}$/);
  });

  test("the hub's mark counts only from the hub's own AMQP user (user_id, which RabbitMQ checks): true = kept, false = not kept", () => {
    const HUB = 'herald-hub';
    const marked = (v: unknown, ...user: unknown[]) =>
      message('a.b', { userId: user.length === 0 ? HUB : user[0], headers: { [Headers.DEAD_STORED]: v } });
    assert.equal(keptByHub(marked('true'), HUB), true);
    assert.equal(keptByHub(marked(Buffer.from('true')), HUB), true);
    assert.equal(hubMark(marked('false'), HUB), 'not-kept');
    for (const v of ['false', 1, true, undefined]) assert.equal(keptByHub(marked(v), HUB), false, String(v));
    assert.equal(keptByHub(message('a.b'), HUB), false);
    for (const userId of [undefined, 'billing', 'HERALD-HUB', Buffer.from(HUB)]) {
      assert.equal(keptByHub(marked('true', userId), HUB), false, `user_id ${String(userId)}`);
      assert.equal(hubMark(marked('false', userId), HUB), undefined, `user_id ${String(userId)}`);
    }
  });

  test("the source: hub only for the hub's own mark of a dead letter it could not keep; anything else, forged marks too, subscriber", () => {
    const HUB = 'herald-hub';
    const of = (userId: unknown, stored: unknown, ...hub: (string | undefined)[]) =>
      receivedDeadLetter(message('a.b', { userId, headers: { [Headers.DEAD_STORED]: stored } }), NOW, hub.length === 0 ? HUB : hub[0])
        .source;
    assert.equal(of(HUB, 'false'), 'hub');
    assert.equal(of('billing', 'false'), 'subscriber');
    assert.equal(of(undefined, 'false'), 'subscriber');
    assert.equal(of(HUB, undefined), 'subscriber');
    assert.equal(of(HUB, 'false', undefined), 'subscriber', 'no hub user known: no mark is trusted');
    assert.equal(receivedDeadLetter(message('a.b'), NOW).source, 'subscriber');
  });
});

describe('the body a dead letter keeps', () => {
  test(`up to ${MAX_KEPT_BODY_BYTES} bytes whole; beyond, cut there and noted with its size`, () => {
    const whole = Buffer.alloc(MAX_KEPT_BODY_BYTES, 7);
    const kept = receivedDeadLetter(message('a.b', {}, whole), NOW);
    assert.equal(kept.body.length, MAX_KEPT_BODY_BYTES);
    assert.equal(kept.properties.sanitized, undefined);
    const big = Buffer.alloc(MAX_KEPT_BODY_BYTES + 10, 7);
    const cut = receivedDeadLetter(message('a.b', { headers: { [Headers.DEAD_REASON]: 'r'.repeat(2000) } }, big), NOW);
    assert.equal(cut.body.length, MAX_KEPT_BODY_BYTES);
    assert.deepEqual(cut.body, big.subarray(0, MAX_KEPT_BODY_BYTES));
    const note = cut.properties.sanitized as { bodyTruncated?: unknown; changed?: unknown };
    assert.deepEqual(note.bodyTruncated, { bytes: MAX_KEPT_BODY_BYTES + 10, kept: MAX_KEPT_BODY_BYTES });
    assert.notEqual(cut.dedupeKey, receivedDeadLetter(message('a.b', {}, Buffer.alloc(MAX_KEPT_BODY_BYTES + 11, 7)), NOW).dedupeKey);
  });
});
