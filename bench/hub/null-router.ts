/**
 * A "null router" in plain amqplib: it consumes queue `herald.ingest` and publishes every message to
 * `herald.events` (same topology as a router hub, persistent, publisher confirms, acks with
 * `multiple` once the forwards are confirmed, pipelined like the hub), but stores nothing and parses
 * nothing: two trips through RabbitMQ and nothing else, what any router costs at the least.
 *
 * With `append`, each batch is handed to it (the bench passes Herald's own store: parse and commit
 * to PostgreSQL) and forwarded once that resolves, the next batch waiting for the one before, as a
 * hub's serial line does: two trips and the log's commit, what a router that keeps a log costs at
 * the least. Used by null-router-bench.ts and by `npm run bench`.
 */
import { EVENTS_EXCHANGE } from '@herald/core';
import { connect, type Message } from 'amqplib';
import { declareRouterQueue, declareShared, ROUTER_QUEUE } from '../../packages/hub/src/ingest/topology.ts';

/** Starts the null router; resolves with a stop function. */
export async function nullRouter(url: string, append?: (batch: readonly Message[]) => Promise<void>): Promise<() => Promise<void>> {
  const conn = await connect(url, { noDelay: true });
  const pubConn = await connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  const pub = await pubConn.createConfirmChannel();
  await declareShared(ch);
  await declareRouterQueue(ch);
  await ch.prefetch(2000);
  let pending: Message[] = [];
  let scheduled = false;
  let line: Promise<void> = Promise.resolve();
  const flush = () => {
    scheduled = false;
    if (append === undefined) return forward();
    line = line
      .then(async () => {
        const batch = pending;
        pending = [];
        if (batch.length === 0) return;
        await append(batch);
        forward(batch);
      })
      .catch((err) => {
        process.stderr.write(`null router: the append failed: ${err instanceof Error ? err.message : err}\n`);
      });
  };
  const forward = (batch = pending) => {
    if (batch === pending) pending = [];
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
