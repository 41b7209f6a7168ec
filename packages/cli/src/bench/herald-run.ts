import { createPublisher, createSubscriber, type Subscriber } from '@herald/client';
import { connect } from 'amqplib';
import { DeliveryCounter } from './deliveries.ts';
import { perSecond, waitDrained } from './drain.ts';
import { publishPlan, SdkSenders, warmUp } from './drive.ts';
import type { BenchOptions } from './options.ts';
import { type EventPlan, typeIndexOf } from './plan.ts';
import { type ReceiverKind, receiverSpecs } from './receivers.ts';
import { type ReceiverFigures, ReceiverTally, SentTally } from './tally.ts';

/** One receiver's result, as reported. */
export interface ReceiverResult extends ReceiverFigures {
  kind: ReceiverKind;
  selector: string[];
  /** Deliveries per second, from the first publish to this receiver's last delivery. */
  throughput: number;
}

/** The Herald part of a run. */
export interface HeraldFigures {
  sent: number;
  /** Publishes that failed (nack, timeout, closed). */
  failed: number;
  sentBy: Record<string, Record<string, number>>;
  receivers: ReceiverResult[];
  publish: { throughput: number; durationMs: number };
  /** Whether every receiver got all it expected before the drain timeout. */
  drained: boolean;
}

/** Raised when nothing published reaches the receivers: the ingest → events path is missing. */
export class NoDeliveryError extends Error {
  constructor(url: string, waitedMs: number) {
    super(
      `nothing published to herald.ingest reached herald.events within ${waitedMs} ms on ${url}: ` +
        'no hub routes events and the archive binding is absent. Run `herald topology --mode archive` ' +
        '(binds herald.ingest → herald.events directly) or start the hub in router mode (`herald hub`), then run the bench again.',
    );
    this.name = 'NoDeliveryError';
  }
}

/**
 * Runs the five receivers and N publishers through the Herald SDK. The receivers' queues are named
 * `herald.bench.<run>.<kind>` and deleted afterwards, whatever happens; topology is never changed.
 * Throws NoDeliveryError when a probe event does not reach the `all` receiver within the warm-up.
 */
export async function runHerald(
  opts: BenchOptions,
  plan: EventPlan,
  runId: string,
  log: (line: string) => void,
  safeUrl: string,
): Promise<HeraldFigures> {
  const specs = receiverSpecs(plan).filter((r) => opts.receivers.includes(r.kind));
  const sent = new SentTally(plan);
  const receivers = specs.map((spec) => {
    const tally = new ReceiverTally(plan, spec.selector);
    return { spec, tally, counter: new DeliveryCounter(plan, runId, tally), queue: `herald.bench.${runId}.${spec.kind}` };
  });
  // The probe counts only when it reaches the receiver of everything.
  const all = receivers.find((r) => r.spec.kind === 'all');
  const subscribers: Subscriber[] = [];
  const senders = new SdkSenders(plan, opts.inFlight);
  let progress: NodeJS.Timeout | undefined;
  // Ctrl-C must still delete the run's queues: they are durable and bound to herald.events, so a
  // leftover would fill up with every event of the vhost. The first signal stops sending and
  // cleans up; a second one exits at once.
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('interrupted: stopping and deleting the run’s queues (again to exit at once)');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (const r of receivers) {
      subscribers.push(
        createSubscriber(
          {
            url: opts.url,
            selector: r.spec.selector,
            queue: r.queue,
            prefetch: opts.prefetch,
            concurrency: 1,
            connectionName: `herald-bench-${r.spec.kind}-${process.pid}`,
          },
          (event) => r.counter.count(event.sender, event.type, event.data),
        ),
      );
    }
    // Publishing before every queue is bound would lose events by design, not by fault.
    await Promise.all(subscribers.map((s) => s.queue)).catch((err: unknown) => {
      throw missingTopology(err, safeUrl) ?? err;
    });
    senders.open((sender, maxPending) =>
      createPublisher({ url: opts.url, sender, maxPending, connectionName: `herald-bench-${sender}-${process.pid}` }),
    );

    // Warm-up: a probe must reach the `all` receiver, else the ingest → events path is missing
    // and the whole run would only measure loss.
    const through = await warmUp(runId, opts.warmupMs, {
      publish: (type, body) =>
        senders.probe(type, body).catch((err: unknown) => {
          throw missingTopology(err, safeUrl) ?? err;
        }),
      seen: () => all?.counter.probeSeen ?? false,
      everyMs: 1000,
      aborted: () => interrupted,
    });
    if (interrupted) throw new Error('interrupted');
    if (!through) throw new NoDeliveryError(safeUrl, opts.warmupMs);

    const startedAt = performance.now();
    if (!opts.quiet) {
      progress = setInterval(() => {
        const secs = ((performance.now() - startedAt) / 1000).toFixed(1);
        const got = receivers.map((r) => `${r.spec.kind} ${r.tally.received}`).join(', ');
        log(`${secs}s sent ${sent.confirmed}${sent.failed.length ? ` (failed ${sent.failed.length})` : ''} | received: ${got}`);
      }, 1000);
      progress.unref();
    }
    let firstError: unknown;
    const result = await publishPlan(opts, plan, runId, sent, {
      publish: senders.publish,
      aborted: () => interrupted,
      onFailure: (_index, err) => {
        firstError ??= err;
      },
    });
    if (firstError !== undefined)
      log(`${result.failed} publishes failed; first: ${firstError instanceof Error ? firstError.message : String(firstError)}`);
    const drained = await waitDrained(
      receivers.map((r) => ({ tally: r.tally, expected: r.tally.expectedFrom(sent) })),
      interrupted ? 0 : opts.drainTimeoutMs,
    );
    if (interrupted) throw new Error('interrupted');
    if (progress) clearInterval(progress);
    const typeOf = (s: number, seq: number) => typeIndexOf(plan, s, seq);
    return {
      sent: sent.confirmed,
      failed: sent.failed.length,
      sentBy: sent.bySender(),
      receivers: receivers.map((r) => ({
        kind: r.spec.kind,
        selector: [...r.spec.selector],
        ...r.tally.figures(sent, typeOf),
        throughput: perSecond(r.tally.received, r.tally.lastAt - result.startedAt),
      })),
      publish: {
        throughput: perSecond(result.confirmed, result.endedAt - result.startedAt),
        durationMs: Math.round(result.endedAt - result.startedAt),
      },
      drained,
    };
  } finally {
    if (progress) clearInterval(progress);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await senders.close();
    await Promise.allSettled(subscribers.map((s) => s.close()));
    await deleteQueues(
      opts.url,
      receivers.map((r) => r.queue),
    );
  }
}

/** A clearer error when the broker says an exchange of Herald's topology does not exist (404). */
function missingTopology(err: unknown, url: string): Error | undefined {
  const text = err instanceof Error ? `${err.message} ${err.cause instanceof Error ? err.cause.message : ''}` : String(err);
  const m = /no exchange '([^']+)'/.exec(text);
  if (!m) return undefined;
  return new Error(
    `exchange ${m[1]} does not exist on ${url}: declare Herald's topology first with \`herald topology --mode archive\` (or start the hub)`,
    {
      cause: err,
    },
  );
}

/** Deletes the run's queues on a connection of its own (the subscribers' are closed by now). */
async function deleteQueues(url: string, queues: string[]): Promise<void> {
  try {
    const conn = await connect(url, { noDelay: true });
    conn.on('error', () => {});
    try {
      const ch = await conn.createChannel();
      for (const q of queues) await ch.deleteQueue(q);
    } finally {
      await conn.close().catch(() => {});
    }
  } catch {
    // Best effort: the names are unique to this run, so a leftover never disturbs another run.
  }
}
