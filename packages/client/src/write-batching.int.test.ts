import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { createTestVhost, type TestVhost } from '@herald/testing';
import { type ChannelModel, connect } from 'amqplib';
import { writeBatcher } from './write-batching.ts';

let vhost: TestVhost;
let model: ChannelModel;

before(async () => {
  vhost = await createTestVhost('write-batching');
  model = await connect(vhost.url);
});

after(async () => {
  await model?.close().catch(() => undefined);
  await vhost?.delete();
});

test('the publishes of one turn leave in a few socket writes, all of them, in order', async () => {
  const ch = await model.createConfirmChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const socket = (model as unknown as { connection: { stream: Socket } }).connection.stream;
  let writes = 0;
  const countWrite = socket._write.bind(socket);
  const countWritev = socket._writev?.bind(socket);
  socket._write = (...args) => {
    writes++;
    countWrite(...args);
  };
  if (countWritev)
    socket._writev = (...args) => {
      writes++;
      countWritev(...args);
    };
  const hold = writeBatcher(model);
  assert.ok(hold, 'an amqplib connection has a socket to batch');
  assert.equal(writeBatcher(model), hold, 'one batcher per connection');
  const count = 200;
  for (let i = 0; i < count; i++) {
    ch.publish('', queue, Buffer.from(`${i}:${'x'.repeat(500)}`));
    hold();
  }
  await ch.waitForConfirms();
  // 200 messages of ~0.6 KiB: one write each unbatched; a few with the socket's 16 KiB buffer.
  assert.ok(writes < count / 4, `expected the ${count} publishes in few writes, got ${writes}`);
  const got: number[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (!m) break;
    got.push(Number(m.content.toString().split(':')[0]));
  }
  assert.deepEqual(
    got,
    Array.from({ length: count }, (_, i) => i),
  );
  await ch.close();
});
