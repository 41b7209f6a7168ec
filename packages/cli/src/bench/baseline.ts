import { type ChannelModel, type ConfirmChannel, connect, type Message } from 'amqplib';
import { waitDrained } from './drain.ts';
import { oneReceiverFigures } from './one-receiver.ts';
import type { BenchOptions } from './options.ts';
import { drive } from './pacer.ts';
import { decodePayload, type EventPlan, encodePayload, eventAt, nowMs } from './plan.ts';
import { type LatencySummary, ReceiverTally, SentTally } from './tally.ts';

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
    const sent = new SentTally(plan);
    const tally = new ReceiverTally(plan, ['*:*']);
    const senderIndex = new Map(plan.senders.map((s, i) => [s, i]));
    const typeIndex = new Map(plan.types.map((t, i) => [t, i]));
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
        const at = performance.now();
        const p = decodePayload(msg.content);
        const s = senderIndex.get(String(msg.properties.appId));
        const t = typeIndex.get(String(msg.properties.type));
        if (p && p.run === runId && s !== undefined && t !== undefined) tally.record(s, t, p.seq, (nowMs() - p.ts) * 1000, at);
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
    const result = await drive({
      rate: opts.rate,
      stop: { total: opts.count, durationMs: opts.durationMs },
      maxInFlight: opts.inFlight * plan.senders.length,
      send(index) {
        const ev = eventAt(plan, index);
        const body = encodePayload({ run: runId, seq: ev.seq, ts: nowMs() }, opts.size);
        return new Promise<void>((resolve, reject) => {
          channels[ev.sender]!.sendToQueue(
            queue,
            body,
            { persistent: true, contentType: 'application/json', appId: plan.senders[ev.sender], type: plan.types[ev.type] },
            (err) => {
              if (err) {
                sent.fail(ev.sender, ev.seq);
                reject(err);
              } else {
                sent.confirm(ev.sender, ev.type);
                resolve();
              }
            },
          );
        });
      },
    });
    await waitDrained([{ tally, expected: sent.confirmed }], opts.drainTimeoutMs);
    flushAck();
    return oneReceiverFigures(plan, sent, tally, result);
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
