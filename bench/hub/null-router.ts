/**
 * A "null router" in plain amqplib: it consumes queue `herald.ingest` and publishes every message to
 * `herald.events` (same topology as a router hub, persistent, publisher confirms, acks with
 * `multiple` once the forwards are confirmed, pipelined like the hub), but stores nothing and parses
 * nothing: two trips through RabbitMQ and nothing else, what any router costs at the least.
 * Used by null-router-bench.ts and by `npm run bench`.
 */
import { EVENTS_EXCHANGE } from '@herald/core';
import { connect, type Message } from 'amqplib';
import { declareRouterQueue, declareShared, ROUTER_QUEUE } from '../../packages/hub/src/ingest/topology.ts';

/** Starts the null router; resolves with a stop function. */
export async function nullRouter(url: string): Promise<() => Promise<void>> {
  const conn = await connect(url, { noDelay: true });
  const pubConn = await connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  const pub = await pubConn.createConfirmChannel();
  await declareShared(ch);
  await declareRouterQueue(ch);
  await ch.prefetch(2000);
  let pending: Message[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const batch = pending;
    pending = [];
    if (batch.length === 0) return;
    let left = batch.length;
    for (const m of batch) {
      pub.publish(EVENTS_EXCHANGE, m.fields.routingKey, m.content, { ...m.properties, persistent: true }, (err) => {
        if (!err && --left === 0) ch.ack(batch[batch.length - 1] as Message, true);
      });
    }
  };
  await ch.consume(ROUTER_QUEUE, (m) => {
    if (!m) return;
    pending.push(m);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
  return async () => {
    await ch.close().catch(() => undefined);
    await pub.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
    await pubConn.close().catch(() => undefined);
  };
}
