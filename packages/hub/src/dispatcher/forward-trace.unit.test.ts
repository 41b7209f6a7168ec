import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromAmqp, uuidv7 } from '@herald/core';
import { fieldTableBytes, HEADERS_DROPPED_HEADER, MAX_HEADER_TABLE_BYTES } from '../ingest/amqp-table.ts';
import type { StoredEvent } from '../store/types.ts';
import { forwardMessage } from './forward-message.ts';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TS = `a=${'v'.repeat(250)},b=${'w'.repeat(250)}`;

const stored = (headers: Record<string, string>): StoredEvent => ({
  offset: 42n,
  storedAt: 0,
  id: uuidv7(),
  sender: 'billing',
  type: 'invoice.paid',
  time: 1_700_000_000_000,
  data: Buffer.from('{}'),
  contentType: 'application/json',
  headers,
  traceparent: TP,
  tracestate: TS,
});

test('the forward carries the trace context; a consumer reads it back as it was published', () => {
  const m = forwardMessage(stored({ tenant: 'acme' }), 'r1');
  assert.equal(m.dropped, undefined);
  const back = fromAmqp(m);
  assert.deepEqual([back.traceparent, back.tracestate, back.headers, back.offset], [TP, TS, { tenant: 'acme' }, 42n]);
});

test('headers right at the table limit: the trace context is counted, and kept when the event headers are dropped', () => {
  // Short of the limit on their own, past it with the trace context: only its bytes tip the table over.
  const near = stored({ big: 'x'.repeat(MAX_HEADER_TABLE_BYTES - 400) });
  assert.equal(forwardMessage({ ...near, traceparent: undefined, tracestate: undefined }, undefined).dropped, undefined);
  const m = forwardMessage(near, undefined);
  assert.ok(m.dropped !== undefined, 'the exact measure saw the table does not fit');
  assert.equal(m.properties.headers?.[HEADERS_DROPPED_HEADER], 'true');
  assert.ok(fieldTableBytes(m.properties.headers ?? {}) <= MAX_HEADER_TABLE_BYTES);
  const back = fromAmqp(m);
  assert.deepEqual([back.traceparent, back.tracestate, back.headers], [TP, TS, { [HEADERS_DROPPED_HEADER]: 'true' }]);
});
