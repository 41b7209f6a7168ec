import { createHubPublisher, createSubscriber } from '@herald/client';
import type { BaselineFigures } from '../../packages/cli/src/bench/baseline.ts';
import { SdkSenders, warmUp } from '../../packages/cli/src/bench/drive.ts';
import { OneReceiverRun } from '../../packages/cli/src/bench/one-receiver-run.ts';
import type { BenchOptions } from '../../packages/cli/src/bench/options.ts';
import type { EventPlan } from '../../packages/cli/src/bench/plan.ts';

/**
 * The plan of `herald bench --receivers all` published over the hub's gRPC PublishStream: one
 * createHubPublisher per sender (answers pipelined, `inFlight × 2` admitted each) to a router hub,
 * which stores each event itself and forwards it to herald.events, where one receiver of
 * everything (the SDK's subscriber, a server-named queue of the vhost `opts.url`) counts it. A
 * probe must come through before the run starts. Loss, order and latency as for the baseline.
 */
export async function runDirectPublish(
  opts: BenchOptions,
  plan: EventPlan,
  runId: string,
  grpcUrl: string,
  log: (line: string) => void,
): Promise<BaselineFigures> {
  const run = new OneReceiverRun(plan, runId);
  const receiver = createSubscriber(
    { url: opts.url, selector: '*:*', prefetch: opts.prefetch, connectionName: `herald-bench-direct-${process.pid}` },
    (event) => run.count(event.sender, event.type, event.data),
  );
  const senders = new SdkSenders(plan, opts.inFlight);
  try {
    await receiver.queue;
    senders.open((sender, maxPending) => createHubPublisher({ url: grpcUrl, sender, maxPending }));
    const through = await warmUp(runId, opts.warmupMs, {
      publish: senders.probe,
      seen: () => run.probeSeen,
      everyMs: 500,
    });
    if (!through) throw new Error(`no event published on ${grpcUrl} reached herald.events within ${opts.warmupMs} ms`);
    log('direct: publishing');
    const result = await run.publish(opts, { publish: senders.publish });
    return run.figures(result);
  } finally {
    await senders.close();
    await receiver.close();
  }
}
