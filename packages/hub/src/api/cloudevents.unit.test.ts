import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeraldError, uuidv7 } from '@herald/core';
import type { StoredEvent } from '../store/types.ts';
import { CLOUDEVENT_BATCH_MEDIA, CLOUDEVENT_MEDIA, cloudEvent, fromBinary, fromStructured, prefers } from './cloudevents.ts';

const noTime = () => undefined;

test('Accept: a CloudEvents media type when named at least as high as application/json; else JSON', () => {
  const cases: [string | undefined, boolean][] = [
    [undefined, false],
    ['*/*', false],
    ['application/json', false],
    [CLOUDEVENT_MEDIA, true],
    ['Application/CloudEvents+JSON', true],
    [`application/json, ${CLOUDEVENT_MEDIA}`, true],
    [`application/json;q=1, ${CLOUDEVENT_MEDIA};q=0.5`, false],
    [`${CLOUDEVENT_MEDIA};q=0`, false],
    [`${CLOUDEVENT_MEDIA};q=abc`, false],
    [CLOUDEVENT_BATCH_MEDIA, false],
  ];
  for (const [accept, want] of cases) assert.equal(prefers(accept, CLOUDEVENT_MEDIA), want, String(accept));
  assert.equal(prefers(CLOUDEVENT_BATCH_MEDIA, CLOUDEVENT_BATCH_MEDIA), true);
});

test('headers whose names are not extension names travel in heraldheaders, and come back as headers', () => {
  const e: StoredEvent = {
    offset: 9n,
    storedAt: 0,
    id: uuidv7(),
    sender: 'billing',
    type: 'invoice.paid',
    time: 0,
    data: Buffer.alloc(0),
    contentType: 'application/json',
    headers: { tenant: 'acme', 'X-Mixed': 'a', data: 'clash', correlationid: 'clash too' },
  };
  const ce = cloudEvent(e);
  assert.equal(ce.tenant, 'acme');
  assert.equal(ce.data, undefined, 'an empty body has no data');
  assert.deepEqual(JSON.parse(String(ce.heraldheaders)), { 'X-Mixed': 'a', data: 'clash', correlationid: 'clash too' });
  const back = fromStructured(ce, noTime);
  assert.deepEqual(back.headers, e.headers);
  assert.equal(back.correlationId, undefined);
  assert.equal((back.data as Buffer).length, 0);
});

test('binary mode: ce-* headers percent-decoded, extensions as headers, read-only attributes ignored', () => {
  const init = fromBinary(
    {
      'ce-specversion': '1.0',
      'ce-id': '0190b6e4-7c1a-7cc2-9b43-3f1d2e5a6b7c',
      'ce-source': 'billing',
      'ce-type': 'invoice.paid',
      'ce-subject': 'caf%C3%A9',
      'ce-heraldoffset': '12',
      'ce-region': 'eu',
      'content-type': 'text/csv',
      accept: 'x',
    },
    Buffer.from('a,b'),
    noTime,
  );
  assert.deepEqual(
    [init.sender, init.subject, init.contentType, init.headers, String(init.data)],
    ['billing', 'café', 'text/csv', { region: 'eu' }, 'a,b'],
  );
  assert.throws(
    () => fromBinary({ 'ce-specversion': '1.0', 'ce-id': uuidv7(), 'ce-type': 't' }, Buffer.alloc(0), noTime),
    (err: unknown) => err instanceof HeraldError && err.details?.parameter === 'source',
  );
});
