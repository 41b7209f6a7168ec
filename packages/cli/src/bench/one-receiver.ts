import type { BaselineFigures } from './baseline.ts';
import { perSecond } from './drain.ts';
import type { DriveResult } from './pacer.ts';
import { type EventPlan, typeIndexOf } from './plan.ts';
import type { ReceiverTally, SentTally } from './tally.ts';

/**
 * The figures of a run with one receiver of everything (raw amqplib, JetStream, a gRPC
 * subscription): loss, order and latency from the tally, rates from the first publish to the last
 * confirm and to the last distinct delivery.
 */
export function oneReceiverFigures(plan: EventPlan, sent: SentTally, tally: ReceiverTally, result: DriveResult): BaselineFigures {
  const f = tally.figures(sent, (s, seq) => typeIndexOf(plan, s, seq));
  return {
    sent: sent.confirmed,
    received: f.received,
    lost: f.lost,
    duplicates: f.duplicates,
    reordered: f.reordered,
    publishThroughput: perSecond(result.confirmed, result.endedAt - result.startedAt),
    endToEndThroughput: perSecond(tally.distinct, tally.lastAt - result.startedAt),
    latencyMs: f.latencyMs,
  };
}
