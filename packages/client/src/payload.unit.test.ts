import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasCode } from '@herald/core';
import { payloadOf, withPayload } from './payload.ts';

const id = '0190a6b2-0000-7000-8000-000000000000';
const of = (body: string | Buffer, contentType: string) => ({ id, data: Buffer.isBuffer(body) ? body : Buffer.from(body), contentType });

test('payload(): JSON bodies parsed, whatever the case and parameters of the media type', () => {
  assert.deepEqual(payloadOf(of('{"amount":42}', 'application/json')), { amount: 42 });
  assert.deepEqual(payloadOf(of('[1,2]', 'Application/JSON; charset=utf-8')), [1, 2]);
  assert.deepEqual(payloadOf(of('{"specversion":"1.0"}', 'application/cloudevents+json')), { specversion: '1.0' });
  assert.equal(payloadOf(of('null', 'application/json')), null);
});

test('payload(): text as a string, other bodies as their bytes', () => {
  assert.equal(payloadOf(of('héllo\u0000', 'text/plain')), 'héllo\u0000');
  const bytes = Buffer.from([0, 255, 1]);
  assert.equal(payloadOf(of(bytes, 'application/octet-stream')), bytes);
});

test('payload(): a JSON body that does not parse is an INVALID_EVENT naming the event', () => {
  for (const body of ['{"a":', '', '\u0000', 'undefined']) {
    assert.throws(
      () => payloadOf(of(body, 'application/json')),
      (err: unknown) => hasCode(err, 'INVALID_EVENT') && err.message.includes(id),
      JSON.stringify(body),
    );
  }
});

test('withPayload keeps every field and survives a spread (the iterator adds ack/nack that way)', () => {
  const event = { ...of('{"n":1}', 'application/json'), sender: 's', type: 't', time: 0, headers: {} };
  const copy = { ...withPayload(event), extra: true };
  assert.deepEqual(copy.payload(), { n: 1 });
  assert.equal(copy.sender, 's');
});
