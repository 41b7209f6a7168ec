import type * as Nats from 'nats';
import type { BaselineFigures } from './baseline.ts';
import { waitDrained } from './drain.ts';
import { oneReceiverFigures } from './one-receiver.ts';
import type { BenchOptions } from './options.ts';
import { drive } from './pacer.ts';
import { decodePayload, type EventPlan, encodePayload, eventAt, nowMs } from './plan.ts';
import { ReceiverTally, SentTally } from './tally.ts';

/**
 * The `nats` client module (v2). Passed in rather than imported: it is a development dependency of
 * the repository's benchmarks, not a dependency of the CLI.
 */
export type NatsModule = Pick<typeof Nats, 'connect' | 'AckPolicy' | 'StorageType' | 'DeliverPolicy'>;

/** Where and how the JetStream run goes; the load itself (count or rate × duration, size, window) is `opts`'s. */
export interface JetStreamTarget {
  /** NATS server(s), e.g. `127.0.0.1:4222`. */
  servers: string;
  nats: NatsModule;
}

/** The name of the run's stream: unique per run, deleted at the end. */
export function jetStreamName(runId: string): string {
  return `herald-bench-${runId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/**
 * The plan of `herald bench --baseline` through NATS JetStream instead of RabbitMQ: a stream of its
 * own (file storage, one replica) on subjects `<stream>.<sender>.<type>`, one connection per sender
 * publishing with `js.publish` (acks pipelined, at most `inFlight` per sender awaiting theirs, as
 * the baseline's confirms), and one durable pull consumer with explicit acks (up to `prefetch`
 * messages asked for at a time) on a connection of its own. Loss, order and latency are counted as
 * for the baseline. The stream (and with it the consumer) is deleted afterwards, whatever happens.
 */
export async function runJetStream(
  opts: BenchOptions,
  plan: EventPlan,
  runId: string,
  target: JetStreamTarget,
  log: (line: string) => void,
): Promise<BaselineFigures> {
  const { nats } = target;
  const stream = jetStreamName(runId);
  const consumerConn = await nats.connect({ servers: target.servers, name: `herald-bench-jetstream-consumer-${process.pid}` });
  const publisherConns: Nats.NatsConnection[] = [];
  let messages: Nats.ConsumerMessages | undefined;
  try {
    const jsm = await consumerConn.jetstreamManager();
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: nats.StorageType.File, num_replicas: 1 });
    await jsm.consumers.add(stream, {
      durable_name: 'bench',
      ack_policy: nats.AckPolicy.Explicit,
      deliver_policy: nats.DeliverPolicy.All,
      max_ack_pending: opts.prefetch * 4,
    });
    const sent = new SentTally(plan);
    const tally = new ReceiverTally(plan, ['*:*']);
    const senderIndex = new Map(plan.senders.map((s, i) => [s, i]));
    const typeIndex = new Map(plan.types.map((t, i) => [t, i]));
    const prefix = stream.length + 1;
    messages = await (await consumerConn.jetstream().consumers.get(stream, 'bench')).consume({ max_messages: opts.prefetch });
    const consuming = (async (msgs: Nats.ConsumerMessages) => {
      for await (const m of msgs) {
        const at = performance.now();
        const p = decodePayload(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
        const [sender, type] = m.subject.slice(prefix).split('.');
        const s = senderIndex.get(sender ?? '');
        const t = typeIndex.get(type ?? '');
        if (p && p.run === runId && s !== undefined && t !== undefined) tally.record(s, t, p.seq, (nowMs() - p.ts) * 1000, at);
        m.ack();
      }
    })(messages);

    const publishers: Nats.JetStreamClient[] = [];
    for (const sender of plan.senders) {
      const conn = await nats.connect({ servers: target.servers, name: `herald-bench-jetstream-${sender}-${process.pid}` });
      publisherConns.push(conn);
      publishers.push(conn.jetstream());
    }
    log('jetstream: publishing');
    const result = await drive({
      rate: opts.rate,
      stop: { total: opts.count, durationMs: opts.durationMs },
      maxInFlight: opts.inFlight * plan.senders.length,
      send(index) {
        const ev = eventAt(plan, index);
        const body = encodePayload({ run: runId, seq: ev.seq, ts: nowMs() }, opts.size);
        const subject = `${stream}.${plan.senders[ev.sender]}.${plan.types[ev.type]}`;
        return publishers[ev.sender]!.publish(subject, body, { expect: { streamName: stream } }).then(
          () => sent.confirm(ev.sender, ev.type),
          (err: unknown) => {
            sent.fail(ev.sender, ev.seq);
            throw err;
          },
        );
      },
    });
    await waitDrained([{ tally, expected: sent.confirmed }], opts.drainTimeoutMs);
    messages.stop();
    await consuming.catch(() => undefined);
    return oneReceiverFigures(plan, sent, tally, result);
  } finally {
    messages?.stop();
    for (const c of publisherConns) await c.close().catch(() => {});
    try {
      await (await consumerConn.jetstreamManager()).streams.delete(stream);
    } catch {
      // Best effort: the server may be gone; the stream's name is unique to this run.
    }
    await consumerConn.close().catch(() => {});
  }
}
