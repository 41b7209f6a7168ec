import { createPublisher } from '@herald/client';
import { subscription } from '@herald/client/grpc';
import type { BaselineFigures } from './baseline.ts';
import { SdkSenders, warmUp } from './drive.ts';
import { OneReceiverRun } from './one-receiver-run.ts';
import type { BenchOptions } from './options.ts';
import type { EventPlan } from './plan.ts';

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
  const run = new OneReceiverRun(plan, runId);
  const sub = subscription(`bench-${runId}`, '*:*', { url: grpcUrl, start: 'new', maxInFlight: MAX_IN_FLIGHT });
  const senders = new SdkSenders(plan, opts.inFlight);
  let readError: unknown;
  const reading = (async () => {
    for await (const event of sub) {
      run.count(event.sender, event.type, event.data);
      event.ack();
    }
  })().catch((err: unknown) => {
    readError = err;
  });
  try {
    senders.open((sender, maxPending) =>
      createPublisher({ url: opts.url, sender, maxPending, connectionName: `herald-bench-grpc-${sender}-${process.pid}` }),
    );
    // The subscription exists once its first stream is open: probe until an event comes through.
    const through = await warmUp(runId, opts.warmupMs, {
      publish: senders.probe,
      seen: () => run.probeSeen,
      everyMs: 500,
    });
    if (!through) {
      const why = readError instanceof Error ? `: ${readError.message}` : '';
      throw new Error(`no event reached durable subscription bench-${runId} on ${grpcUrl} within ${opts.warmupMs} ms${why}`);
    }
    log('grpc: publishing');
    const result = await run.publish(opts, { publish: senders.publish });
    return run.figures(result);
  } finally {
    await senders.close();
    await sub.close();
    await reading;
  }
}
