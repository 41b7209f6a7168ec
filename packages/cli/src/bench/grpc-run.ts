import { createPublisher, type Publisher } from '@herald/client';
import { subscription } from '@herald/client/grpc';
import type { BaselineFigures } from './baseline.ts';
import { waitDrained } from './drain.ts';
import { oneReceiverFigures } from './one-receiver.ts';
import type { BenchOptions } from './options.ts';
import { drive } from './pacer.ts';
import { decodePayload, type EventPlan, encodePayload, eventAt, nowMs } from './plan.ts';
import { ReceiverTally, SentTally } from './tally.ts';

/** Events a durable subscription may have delivered and not acknowledged, as the catch-up bench uses. */
const MAX_IN_FLIGHT = 5000;

/**
 * The plan of `herald bench --receivers all` with a durable subscription over gRPC as the receiver:
 * the senders publish through the Herald SDK (one publisher each, confirms pipelined) to a router
 * hub, and one consumer of a new subscription `*:*` (`start: 'new'`, named after the run) reads the
 * live flow with `for await` and acks every event (the SDK coalesces acks). A probe event must
 * reach the subscription before the run starts, as in `herald bench`. Loss, order and latency are
 * counted as for the baseline. The subscription is left asleep on the hub (its database is the
 * bench's own).
 */
export async function runGrpcSubscription(
  opts: BenchOptions,
  plan: EventPlan,
  runId: string,
  grpcUrl: string,
  log: (line: string) => void,
): Promise<BaselineFigures> {
  const sent = new SentTally(plan);
  const tally = new ReceiverTally(plan, ['*:*']);
  const senderIndex = new Map(plan.senders.map((s, i) => [s, i]));
  const typeIndex = new Map(plan.types.map((t, i) => [t, i]));
  const probeRun = `${runId}-probe`;
  let probeSeen = false;
  const sub = subscription(`bench-${runId}`, '*:*', { url: grpcUrl, start: 'new', maxInFlight: MAX_IN_FLIGHT });
  const publishers: Publisher[] = [];
  let readError: unknown;
  const reading = (async () => {
    for await (const event of sub) {
      const at = performance.now();
      const p = decodePayload(event.data);
      event.ack();
      if (p === undefined) continue;
      if (p.run === probeRun) probeSeen = true;
      const s = senderIndex.get(event.sender);
      const t = typeIndex.get(event.type);
      if (p.run === runId && s !== undefined && t !== undefined) tally.record(s, t, p.seq, (nowMs() - p.ts) * 1000, at);
    }
  })().catch((err: unknown) => {
    readError = err;
  });
  try {
    for (const sender of plan.senders) {
      publishers.push(
        createPublisher({
          url: opts.url,
          sender,
          maxPending: opts.inFlight * 2,
          connectionName: `herald-bench-grpc-${sender}-${process.pid}`,
        }),
      );
    }
    // The subscription exists once its first stream is open: probe until an event comes through.
    const deadline = performance.now() + opts.warmupMs;
    let probes = 0;
    while (!probeSeen && performance.now() < deadline) {
      probes += 1;
      await publishers[0]!.publish('bench-probe', encodePayload({ run: probeRun, seq: probes, ts: nowMs() }, 0), {
        contentType: 'application/json',
      });
      const next = performance.now() + 500;
      while (!probeSeen && performance.now() < next) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (!probeSeen) {
      const why = readError instanceof Error ? `: ${readError.message}` : '';
      throw new Error(`no event reached durable subscription bench-${runId} on ${grpcUrl} within ${opts.warmupMs} ms${why}`);
    }
    log('grpc: publishing');
    const result = await drive({
      rate: opts.rate,
      stop: { total: opts.count, durationMs: opts.durationMs },
      maxInFlight: opts.inFlight * plan.senders.length,
      send(index) {
        const ev = eventAt(plan, index);
        const body = encodePayload({ run: runId, seq: ev.seq, ts: nowMs() }, opts.size);
        return publishers[ev.sender]!.publish(plan.types[ev.type]!, body, { contentType: 'application/json' }).then(
          () => sent.confirm(ev.sender, ev.type),
          (err: unknown) => {
            sent.fail(ev.sender, ev.seq);
            throw err;
          },
        );
      },
    });
    await waitDrained([{ tally, expected: sent.confirmed }], opts.drainTimeoutMs);
    return oneReceiverFigures(plan, sent, tally, result);
  } finally {
    await Promise.allSettled(publishers.map((p) => p.close()));
    await sub.close();
    await reading;
  }
}
