import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createEvent, DEFAULT_MAX_EVENT_BYTES, fromAmqp, Headers, isJsonContentType, toAmqp } from './envelope.ts';
import { ValidationError } from './errors.ts';
import { isUuid, uuidv7 } from './uuid.ts';

function rejects(fn: () => unknown, code: string, mentions: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ValidationError, `expected a ValidationError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.ok(err.message.includes(mentions), `${JSON.stringify(err.message)} should mention ${JSON.stringify(mentions)}`);
    return true;
  });
}

describe('createEvent', () => {
  test('fills id (UUIDv7), time and content type; encodes JSON', () => {
    const before = Date.now();
    const e = createEvent({ sender: 'billing', type: 'invoice.paid', data: { amount: 42 } });
    assert.ok(isUuid(e.id));
    assert.equal(e.id[14], '7');
    assert.ok(e.time >= before && e.time <= Date.now());
    assert.equal(e.contentType, 'application/json');
    assert.deepEqual(JSON.parse(e.data.toString()), { amount: 42 });
  });

  test('Buffers go byte for byte; strings as text', () => {
    const bytes = Buffer.from([0, 255, 1, 254]);
    assert.deepEqual(createEvent({ sender: 's', type: 't', data: bytes }).data, bytes);
    assert.equal(createEvent({ sender: 's', type: 't', data: bytes }).contentType, 'application/octet-stream');
    assert.equal(createEvent({ sender: 's', type: 't', data: 'héllo' }).contentType, 'text/plain');
  });

  test('bad input is rejected naming what is wrong', () => {
    rejects(() => createEvent({ sender: 'bad sender', type: 't' }), 'INVALID_SENDER', 'bad sender');
    rejects(() => createEvent({ sender: 's', type: 'a..b' }), 'INVALID_TYPE', 'segment ""');
    rejects(() => createEvent({ sender: 's', type: 'a.b*' }), 'INVALID_TYPE', 'b*');
    rejects(() => createEvent({ sender: 's', type: 't', id: 'nope' }), 'INVALID_EVENT', 'nope');
    rejects(() => createEvent({ sender: 's', type: 't', time: -5 }), 'INVALID_EVENT', 'time');
    rejects(() => createEvent({ sender: 's', type: 't', data: Buffer.alloc(11) }, { maxBytes: 10 }), 'EVENT_TOO_LARGE', '11 bytes');
    rejects(() => createEvent({ sender: 's', type: `${'a.'.repeat(130)}b` }), 'INVALID_TYPE', '255 bytes');
  });
});

describe('AMQP mapping', () => {
  test('toAmqp sets the properties of the wire contract and fromAmqp reads them back', () => {
    const e = createEvent({
      sender: 'billing',
      type: 'invoice.paid',
      data: { n: 1 },
      time: 1_700_000_000_123,
      subject: 'inv-1',
      correlationId: 'corr',
      causationId: 'cause',
      headers: { tenant: 'acme' },
    });
    const m = toAmqp(e, { userId: 'guest', offset: 9007199254740993n });
    assert.equal(m.routingKey, 'billing.invoice.paid');
    assert.equal(m.properties.messageId, e.id);
    assert.equal(m.properties.appId, 'billing');
    assert.equal(m.properties.type, 'invoice.paid');
    assert.equal(m.properties.timestamp, 1_700_000_000);
    assert.equal(m.properties.deliveryMode, 2);
    assert.equal(m.properties.userId, 'guest');
    assert.equal(m.properties.headers?.[Headers.TIME], 1_700_000_000_123);
    const back = fromAmqp(m);
    assert.equal(back.id, e.id);
    assert.equal(back.time, e.time);
    assert.equal(back.subject, 'inv-1');
    assert.equal(back.correlationId, 'corr');
    assert.equal(back.causationId, 'cause');
    assert.deepEqual(back.headers, { tenant: 'acme' });
    assert.equal(back.offset, 9007199254740993n);
  });

  test('a plain message with only a routing key and a body is a valid event', () => {
    const e = fromAmqp({ routingKey: 'billing.invoice.paid', content: Buffer.from('{}'), properties: {} }, { now: 5 });
    assert.equal(e.sender, 'billing');
    assert.equal(e.type, 'invoice.paid');
    assert.ok(isUuid(e.id));
    assert.equal(e.time, 5);
    assert.equal(e.contentType, 'application/json');
  });

  test('time falls back from x-herald-time to the AMQP timestamp', () => {
    const e = fromAmqp({ routingKey: 's.t', content: Buffer.alloc(0), properties: { timestamp: 1000 } });
    assert.equal(e.time, 1_000_000);
  });

  test('disagreements and bad values are rejected with the reason', () => {
    const body = Buffer.from('{}');
    rejects(() => fromAmqp({ routingKey: 'billing', content: body, properties: {} }), 'INVALID_EVENT', '<sender>.<type>');
    rejects(() => fromAmqp({ routingKey: 'bil ling.x', content: body, properties: {} }), 'INVALID_SENDER', 'bil ling');
    rejects(() => fromAmqp({ routingKey: 'billing.x', content: body, properties: { appId: 'crm' } }), 'INVALID_EVENT', 'app_id');
    rejects(() => fromAmqp({ routingKey: 'billing.x', content: body, properties: { type: 'y' } }), 'INVALID_EVENT', 'type property');
    rejects(() => fromAmqp({ routingKey: 'billing.x', content: body, properties: { messageId: '42' } }), 'INVALID_EVENT', 'message_id');
    rejects(
      () => fromAmqp({ routingKey: 'billing.x', content: body, properties: { headers: { [Headers.TIME]: 'soon' } } }),
      'INVALID_EVENT',
      Headers.TIME,
    );
    rejects(
      () => fromAmqp({ routingKey: 'billing.x', content: Buffer.alloc(DEFAULT_MAX_EVENT_BYTES + 1), properties: {} }),
      'EVENT_TOO_LARGE',
      'exceeds',
    );
  });

  test('JSON content types', () => {
    assert.ok(isJsonContentType('application/json'));
    assert.ok(isJsonContentType('application/cloudevents+json; charset=utf-8'));
    assert.ok(!isJsonContentType('text/plain'));
  });
});

describe('uuidv7', () => {
  test('ids made in the same millisecond still sort in creation order', () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7(1_700_000_000_000));
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
  });
});
