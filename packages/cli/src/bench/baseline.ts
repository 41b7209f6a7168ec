import { type ChannelModel, type ConfirmChannel, connect, type Message } from 'amqplib';
import { OneReceiverRun } from './one-receiver-run.ts';
import type { BenchOptions } from './options.ts';
import type { EventPlan } from './plan.ts';
import type { LatencySummary } from './tally.ts';

/** What raw amqplib achieves on the same broker with the same load: the yardstick for Herald. */
export interface BaselineFigures {
  sent: number;
  received: number;
  lost: number;
  duplicates: number;
  reordered: number;
  /** Confirmed publishes per second, first publish to last confirm. */
  publishThroughput: number;
  /** Deliveries per second, first publish to last delivery. */
  endToEndThroughput: number;
  latencyMs: LatencySummary;
}

/**
 * Publishes the same plan with plain amqplib — confirms pipelined, persistent messages, one
 * connection per sender — to a fresh durable queue, and consumes it with manual acks batched with
 * allUpTo (prefetch as for Herald's receivers). The queue is deleted afterwards, whatever happens.
 */
export async function runBaseline(
  opts: BenchOptions,
  plan: EventPlan,
  runId: string,
  log: (line: string) => void,
): Promise<BaselineFigures> {
  // Nagle's algorithm holds small frames back and roughly doubles latency; Herald's client turns it off too.
  const socket = { noDelay: true };
  const queue = `herald.bench.${runId}.baseline`;
  const consumerConn = await connect(opts.url, {
    ...socket,
    clientProperties: { connection_name: `herald-bench-baseline-consumer-${process.pid}` },
  });
  // Without an 'error' listener a dropped connection would crash the process instead of failing the run.
  consumerConn.on('error', () => {});
  const publisherConns: ChannelModel[] = [];
  try {
    const ch = await consumerConn.createChannel();
    await ch.assertQueue(queue, { durable: true });
    await ch.prefetch(opts.prefetch);
    const run = new OneReceiverRun(plan, runId);
    let toAck: Message | undefined;
    let unacked = 0;
    const flushAck = () => {
      if (toAck) ch.ack(toAck, true);
      toAck = undefined;
      unacked = 0;
    };
    await ch.consume(
      queue,
      (msg) => {
        if (!msg) return;
        run.count(String(msg.properties.appId), String(msg.properties.type), msg.content);
        // One ack (allUpTo) per batch read from the socket, or every half prefetch, not one per message.
        toAck = msg;
        if (++unacked === 1) setImmediate(flushAck);
        else if (unacked >= opts.prefetch / 2) flushAck();
      },
      { noAck: false },
    );

    const channels: ConfirmChannel[] = [];
    for (let i = 0; i < plan.senders.length; i++) {
      const conn = await connect(opts.url, {
        ...socket,
        clientProperties: { connection_name: `herald-bench-baseline-${plan.senders[i]}-${process.pid}` },
      });
      conn.on('error', () => {});
      publisherConns.push(conn);
      channels.push(await conn.createConfirmChannel());
    }
    log('baseline: publishing with raw amqplib');
    const result = await run.publish(opts, {
      // A confirm channel answers through a callback: the broker's ack, or its nack as an error.
      publish: (ev, body) =>
        new Promise<void>((resolve, reject) => {
          channels[ev.sender]!.sendToQueue(
            queue,
            body,
            { persistent: true, contentType: 'application/json', appId: plan.senders[ev.sender], type: plan.types[ev.type] },
            (err) => (err ? reject(err) : resolve()),
          );
        }),
    });
    flushAck();
    return run.figures(result);
  } finally {
    for (const c of publisherConns) await c.close().catch(() => {});
    try {
      const ch = await consumerConn.createChannel();
      await ch.deleteQueue(queue);
    } catch {
      // Best effort: the connection may be gone; the queue name is unique to this run.
    }
    await consumerConn.close().catch(() => {});
  }
}
