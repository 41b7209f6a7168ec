import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SubscriptionEvent } from '@herald/client/grpc';
import { formatJson, formatLine, parseFrom } from './tail.ts';

test('--from: new, earliest, offset:N, last:N, time:ISO; anything else names the flag', () => {
  assert.equal(parseFrom('new'), 'new');
  assert.equal(parseFrom('earliest'), 'earliest');
  assert.deepEqual(parseFrom('offset:18446744073709551615'), { offset: 18446744073709551615n });
  assert.deepEqual(parseFrom('last:10'), { last: 10 });
  assert.deepEqual(parseFrom('time:2026-01-31T12:00:00Z'), { time: new Date('2026-01-31T12:00:00Z') });
  for (const bad of ['latest', 'offset:-1', 'last:0', 'last:x', 'time:yesterday', 'offset:']) {
    assert.throws(() => parseFrom(bad), /invalid --from .*expected new, earliest, offset:N, last:N or time:ISO/, bad);
  }
});

function event(data: string, contentType: string, extra: { subject?: string; replay?: string } = {}): SubscriptionEvent {
  return {
    payload: () => undefined,
    offset: 42n,
    id: '0190a6b2-0000-7000-8000-000000000000',
    sender: 'billing',
    type: 'invoice.paid',
    time: Date.parse('2026-01-31T12:00:00Z'),
    data: Buffer.from(data),
    contentType,
    headers: {},
    ack() {},
    ...extra,
  };
}

test('a line: offset, time, sender:type, data as text (flattened, truncated), replay mark', () => {
  assert.equal(formatLine(event('{"n":1}', 'application/json')), '42  2026-01-31T12:00:00.000Z  billing:invoice.paid  {"n":1}');
  assert.equal(formatLine(event('a\n  b', 'text/plain')), '42  2026-01-31T12:00:00.000Z  billing:invoice.paid  a b');
  assert.match(formatLine(event('\u0000\u0001', 'application/octet-stream')), / {2}base64:AAE=$/);
  const long = formatLine(event(`"${'x'.repeat(500)}"`, 'application/json'));
  assert.ok(long.endsWith('…') && long.length < 200, long);
  assert.match(formatLine(event('1', 'application/json', { replay: 'r1' })), / {2}\(replay r1\)$/);
});

test('--json: one object, data parsed when JSON, else base64', () => {
  assert.deepEqual(JSON.parse(formatJson(event('{"n":1}', 'application/json', { subject: 's' }))), {
    offset: '42',
    id: '0190a6b2-0000-7000-8000-000000000000',
    sender: 'billing',
    type: 'invoice.paid',
    time: '2026-01-31T12:00:00.000Z',
    contentType: 'application/json',
    subject: 's',
    data: { n: 1 },
  });
  assert.equal(JSON.parse(formatJson(event('hi', 'text/plain'))).dataBase64, 'aGk=');
});
