import type * as Nats from 'nats';
import type { BaselineFigures } from './baseline.ts';
import { OneReceiverRun } from './one-receiver-run.ts';
import type { BenchOptions } from './options.ts';
import type { EventPlan } from './plan.ts';

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
    const run = new OneReceiverRun(plan, runId);
    const prefix = stream.length + 1;
    messages = await (await consumerConn.jetstream().consumers.get(stream, 'bench')).consume({ max_messages: opts.prefetch });
    const consuming = (async (msgs: Nats.ConsumerMessages) => {
      for await (const m of msgs) {
        const [sender, type] = m.subject.slice(prefix).split('.');
        run.count(sender ?? '', type ?? '', Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
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
    const result = await run.publish(opts, {
      publish: (ev, body) =>
        publishers[ev.sender]!.publish(`${stream}.${plan.senders[ev.sender]}.${plan.types[ev.type]}`, body, {
          expect: { streamName: stream },
        }),
    });
    messages.stop();
    await consuming.catch(() => undefined);
    return run.figures(result);
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
