import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { bindingKeys, compileMatcher } from '@herald/core';
import { createTestVhost, selectorCases, type TestVhost } from '@herald/testing';
import amqp from 'amqplib';

// The shared selector case table against the real RabbitMQ: for every case, a queue bound to a
// topic exchange with the selector's binding keys must receive exactly the `match` routing keys.
// With the matcher (unit test) and the SQL predicate (store suite), the three compilations of a
// selector are held to one table.
let vhost: TestVhost;
let conn: amqp.ChannelModel;

before(async () => {
  vhost = await createTestVhost('routing');
  conn = await amqp.connect(vhost.url, { noDelay: true });
});

after(async () => {
  await conn?.close().catch(() => {});
  await vhost?.delete();
});

test('binding keys route exactly what the selector matches, on the real broker', async () => {
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange('routing', 'topic', { durable: false, autoDelete: false });
  const keys = [...new Set(selectorCases.flatMap((c) => [...c.match, ...c.miss]))];
  const queues = await Promise.all(
    selectorCases.map(async (c, i) => {
      const q = `case-${i}`;
      await ch.assertQueue(q, { durable: false });
      for (const key of bindingKeys(c.selector)) await ch.bindQueue(q, 'routing', key);
      return q;
    }),
  );
  for (const key of keys) ch.publish('routing', key, Buffer.from(key));
  await ch.waitForConfirms();
  for (const [i, c] of selectorCases.entries()) {
    const got = new Set<string>();
    for (;;) {
      const msg = await ch.get(queues[i] as string, { noAck: true });
      if (msg === false) break;
      got.add(msg.fields.routingKey);
    }
    const where = `${c.name} (${bindingKeys(c.selector).join(' ')})`;
    for (const key of c.match) assert.ok(got.has(key), `${where}: ${key} should arrive`);
    for (const key of c.miss) assert.ok(!got.has(key), `${where}: ${key} should not arrive`);
    // Every other key of the table: the broker and the in-memory matcher agree.
    const match = compileMatcher(c.selector);
    for (const key of keys) {
      const dot = key.indexOf('.');
      assert.equal(got.has(key), match(key.slice(0, dot), key.slice(dot + 1)), `${where}: broker and matcher disagree on ${key}`);
    }
  }
});
