import { probeRunOf } from './drive.ts';
import { decodePayload, type EventPlan, nowMs } from './plan.ts';
import type { ReceiverTally } from './tally.ts';

/**
 * Counts what one receiver gets into its tally: the run's events by their sender and type names,
 * with their latency from the send time in their data. Anything of another run, of a sender or type
 * not in the plan, or not made by a bench is passed over; the run's probe events only set
 * `probeSeen`.
 */
export class DeliveryCounter {
  /** Whether a probe event of the run has come. */
  probeSeen = false;
  private readonly senderIndex: Map<string, number>;
  private readonly typeIndex: Map<string, number>;
  private readonly probeRun: string;

  constructor(
    plan: EventPlan,
    readonly runId: string,
    readonly tally: ReceiverTally,
  ) {
    this.senderIndex = new Map(plan.senders.map((s, i) => [s, i]));
    this.typeIndex = new Map(plan.types.map((t, i) => [t, i]));
    this.probeRun = probeRunOf(runId);
  }

  /** Counts one delivery as it arrives: call it first thing, its arrival time is taken here. */
  count(sender: string, type: string, data: Buffer): void {
    const at = performance.now();
    const p = decodePayload(data);
    if (p === undefined) return;
    if (p.run !== this.runId) {
      if (p.run === this.probeRun) this.probeSeen = true;
      return;
    }
    const s = this.senderIndex.get(sender);
    const t = this.typeIndex.get(type);
    if (s !== undefined && t !== undefined) this.tally.record(s, t, p.seq, (nowMs() - p.ts) * 1000, at);
  }
}
