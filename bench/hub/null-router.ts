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
import { EVENTS_EXCHANGE, fromAmqp } from '@herald/core';
import { connect, type Message } from 'amqplib';
import { declareRouterQueue, declareShared, ROUTER_QUEUE } from '../../packages/hub/src/ingest/topology.ts';
import { openStore } from '../../packages/hub/src/store/index.ts';

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
    const batch = pending;
    pending = [];
    if (append === undefined) return forward(batch);
    line = line.then(async () => {
      try {
        await append(batch);
        forward(batch);
      } catch (err) {
        // Back to the queue, so the run does not wait out its drain on a batch nobody acknowledges.
        process.stderr.write(`null router: the append failed, batch requeued: ${err instanceof Error ? err.message : err}\n`);
        ch.nack(batch[batch.length - 1] as Message, true, true);
      }
    });
  };
  const forward = (batch: Message[]) => {
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

/**
 * The null router with a log: each batch parsed and committed to PostgreSQL at `databaseUrl`
 * (migrated, writer lease taken) through Herald's store before it is forwarded. Resolves with a
 * stop function that also closes the store.
 */
export async function nullRouterWithLog(url: string, databaseUrl: string): Promise<() => Promise<void>> {
  const store = await openStore({ url: databaseUrl });
  await store.migrate();
  if (!(await store.acquireWriterLease())) throw new Error('the null router’s log: no writer lease');
  const stop = await nullRouter(url, async (batch) => {
    const now = Date.now();
    await store.append(
      batch.map((m) => fromAmqp({ routingKey: m.fields.routingKey, content: m.content, properties: m.properties }, { now })),
    );
  });
  return async () => {
    await stop();
    await store.close().catch(() => undefined);
  };
}
