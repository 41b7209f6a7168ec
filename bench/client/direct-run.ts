import { createHubPublisher, createSubscriber, type HubPublisher } from '@herald/client';
import type { BaselineFigures } from '../../packages/cli/src/bench/baseline.ts';
import { waitDrained } from '../../packages/cli/src/bench/drain.ts';
import { oneReceiverFigures } from '../../packages/cli/src/bench/one-receiver.ts';
import type { BenchOptions } from '../../packages/cli/src/bench/options.ts';
import { drive } from '../../packages/cli/src/bench/pacer.ts';
import { decodePayload, type EventPlan, encodePayload, eventAt, nowMs } from '../../packages/cli/src/bench/plan.ts';
import { ReceiverTally, SentTally } from '../../packages/cli/src/bench/tally.ts';

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
  const sent = new SentTally(plan);
  const tally = new ReceiverTally(plan, ['*:*']);
  const senderIndex = new Map(plan.senders.map((s, i) => [s, i]));
  const typeIndex = new Map(plan.types.map((t, i) => [t, i]));
  const probeRun = `${runId}-probe`;
  let probeSeen = false;
  const receiver = createSubscriber(
    { url: opts.url, selector: '*:*', prefetch: opts.prefetch, connectionName: `herald-bench-direct-${process.pid}` },
    (event) => {
      const at = performance.now();
      const p = decodePayload(event.data);
      if (p === undefined) return;
      if (p.run === probeRun) probeSeen = true;
      const s = senderIndex.get(event.sender);
      const t = typeIndex.get(event.type);
      if (p.run === runId && s !== undefined && t !== undefined) tally.record(s, t, p.seq, (nowMs() - p.ts) * 1000, at);
    },
  );
  const publishers: HubPublisher[] = [];
  try {
    await receiver.queue;
    for (const sender of plan.senders) publishers.push(createHubPublisher({ url: grpcUrl, sender, maxPending: opts.inFlight * 2 }));
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
    if (!probeSeen) throw new Error(`no event published on ${grpcUrl} reached herald.events within ${opts.warmupMs} ms`);
    log('direct: publishing');
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
    await receiver.close();
  }
}
