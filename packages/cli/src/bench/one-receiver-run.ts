import type { BaselineFigures } from './baseline.ts';
import { DeliveryCounter } from './deliveries.ts';
import { waitDrained } from './drain.ts';
import { type PlanLoad, type PlanPublisher, publishPlan } from './drive.ts';
import { oneReceiverFigures } from './one-receiver.ts';
import type { BenchOptions } from './options.ts';
import type { DriveResult } from './pacer.ts';
import type { EventPlan } from './plan.ts';
import { ReceiverTally, SentTally } from './tally.ts';

/**
 * A run with one receiver of everything (`*:*`): raw amqplib, JetStream, a gRPC subscription, the
 * hub's direct publish. The receiver counts into it (`count`), the senders publish through
 * `publish`, and `figures` sums it up as for the baseline.
 */
export class OneReceiverRun extends DeliveryCounter {
  readonly sent: SentTally;

  constructor(
    private readonly plan: EventPlan,
    runId: string,
  ) {
    super(plan, runId, new ReceiverTally(plan, ['*:*']));
    this.sent = new SentTally(plan);
  }

  /**
   * Publishes the planned load (see publishPlan), then waits until the receiver has every confirmed
   * event or got nothing for `opts.drainTimeoutMs` (the rest counts as lost).
   */
  async publish(opts: PlanLoad & Pick<BenchOptions, 'drainTimeoutMs'>, publisher: PlanPublisher): Promise<DriveResult> {
    const result = await publishPlan(opts, this.plan, this.runId, this.sent, publisher);
    await waitDrained([{ tally: this.tally, expected: this.sent.confirmed }], opts.drainTimeoutMs);
    return result;
  }

  /** Loss, order and latency as counted so far; rates from `result`'s first publish. */
  figures(result: DriveResult): BaselineFigures {
    return oneReceiverFigures(this.plan, this.sent, this.tally, result);
  }
}
