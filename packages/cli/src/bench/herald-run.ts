import { createPublisher, createSubscriber, type Publisher, type Subscriber } from '@herald/client';
import type { DeliveredEvent } from '@herald/core';
import { connect } from 'amqplib';
import { perSecond, waitDrained } from './drain.ts';
import type { BenchOptions } from './options.ts';
import { drive } from './pacer.ts';
import { decodePayload, type EventPlan, encodePayload, eventAt, nowMs, typeIndexOf } from './plan.ts';
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

const PROBE_TYPE = 'bench-probe';

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
  const senderIndex = new Map(plan.senders.map((s, i) => [s, i]));
  const typeIndex = new Map(plan.types.map((t, i) => [t, i]));
  const probeRun = `${runId}-probe`;
  let probeSeen = false;
  const sent = new SentTally(plan);
  const receivers = specs.map((spec) => ({
    spec,
    tally: new ReceiverTally(plan, spec.selector),
    queue: `herald.bench.${runId}.${spec.kind}`,
  }));
  const subscribers: Subscriber[] = [];
  const publishers: Publisher[] = [];
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
      const all = r.spec.kind === 'all';
      const handler = (event: DeliveredEvent) => {
        const at = performance.now();
        const p = decodePayload(event.data);
        if (p === undefined) return;
        if (p.run !== runId) {
          if (all && p.run === probeRun) probeSeen = true;
          return;
        }
        const s = senderIndex.get(event.sender);
        const t = typeIndex.get(event.type);
        if (s === undefined || t === undefined) return;
        r.tally.record(s, t, p.seq, (nowMs() - p.ts) * 1000, at);
      };
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
          handler,
        ),
      );
    }
    // Publishing before every queue is bound would lose events by design, not by fault.
    await Promise.all(subscribers.map((s) => s.queue)).catch((err: unknown) => {
      throw missingTopology(err, safeUrl) ?? err;
    });
    for (const sender of plan.senders) {
      publishers.push(
        createPublisher({
          url: opts.url,
          sender,
          maxPending: opts.inFlight * 2,
          connectionName: `herald-bench-${sender}-${process.pid}`,
        }),
      );
    }

    // Warm-up: a probe must reach the `all` receiver, else the ingest → events path is missing
    // and the whole run would only measure loss.
    const probeDeadline = performance.now() + opts.warmupMs;
    let probes = 0;
    let nextProbe = 0;
    while (!probeSeen && !interrupted && performance.now() < probeDeadline) {
      if (performance.now() >= nextProbe) {
        probes += 1;
        nextProbe = performance.now() + 1000;
        await publishers[0]!
          .publish(PROBE_TYPE, encodePayload({ run: probeRun, seq: probes, ts: nowMs() }, 0), {
            contentType: 'application/json',
          })
          .catch((err: unknown) => {
            throw missingTopology(err, safeUrl) ?? err;
          });
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (interrupted) throw new Error('interrupted');
    if (!probeSeen) throw new NoDeliveryError(safeUrl, opts.warmupMs);

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
    const result = await drive({
      rate: opts.rate,
      stop: { total: opts.count, durationMs: opts.durationMs },
      maxInFlight: opts.inFlight * plan.senders.length,
      aborted: () => interrupted,
      send(index) {
        const ev = eventAt(plan, index);
        const body = encodePayload({ run: runId, seq: ev.seq, ts: nowMs() }, opts.size);
        return publishers[ev.sender]!.publish(plan.types[ev.type]!, body, { contentType: 'application/json' }).then(
          () => sent.confirm(ev.sender, ev.type),
          (err: unknown) => {
            sent.fail(ev.sender, ev.seq);
            firstError ??= err;
            throw err;
          },
        );
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
    await Promise.allSettled(publishers.map((p) => p.close()));
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
