import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { EVENTS_EXCHANGE } from '@herald/core';
import { createTestVhost, registerTestTracing, type TestTracing, type TestVhost } from '@herald/testing';
import { type Channel, type ChannelModel, type ConsumeMessage, connect } from 'amqplib';
import { createPublisher, declareTopology } from './index.ts';

// The publisher loads @opentelemetry/api once, on its first createPublisher: this file runs in a
// process of its own, so the publishes below are made before that load has finished.

let vhost: TestVhost;
let conn: ChannelModel;
let ch: Channel;
let tracing: TestTracing;

before(async () => {
  tracing = await registerTestTracing();
  vhost = await createTestVhost('client-trace');
  await declareTopology({ url: vhost.url, mode: 'archive' });
  conn = await connect(vhost.url);
  ch = await conn.createChannel();
});

after(async () => {
  tracing?.disable();
  await conn?.close().catch(() => undefined);
  await vhost?.delete();
});

test('publishes made before @opentelemetry/api has loaded keep their context, their order, and close() waits for them', async () => {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, EVENTS_EXCHANGE, 'early.#');
  const got: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => m && got.push(m), { noAck: true });

  const a = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const b = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';
  const pub = createPublisher({ url: vhost.url, sender: 'early' });
  // All in the same tick as createPublisher: the dynamic import cannot have settled yet.
  const receipts = [
    tracing.inTrace(a, 'k=v', () => pub.publish('one', 1)),
    pub.publish('two', 2, { traceparent: b }),
    tracing.inTrace(b, undefined, () => pub.publish('three', 3)),
    pub.publish('four', 4),
  ];
  await pub.close();
  const settled = await Promise.allSettled(receipts);
  assert.deepEqual(
    settled.map((s) => s.status),
    ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'],
    'publishes made before close() are sent, not refused',
  );
  const deadline = Date.now() + 10_000;
  while (got.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(
    got.map((m) => [m.properties.type, m.properties.headers?.traceparent, m.properties.headers?.tracestate]),
    [
      ['one', a, 'k=v'],
      ['two', b, undefined],
      ['three', b, undefined],
      ['four', undefined, undefined],
    ],
  );
});
