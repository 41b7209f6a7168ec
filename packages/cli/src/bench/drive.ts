import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchOptions } from './options.ts';
import { type DriveOptions, type DriveResult, drive } from './pacer.ts';
import { type EventPlan, encodePayload, eventAt, nowMs } from './plan.ts';
import type { SentTally } from './tally.ts';

/** One event of the plan: its sender's index, its per-sender sequence number and its type's index. */
export type PlannedEvent = ReturnType<typeof eventAt>;

/** The load a run publishes: how fast, how many or how long, how large, how many unconfirmed per sender. */
export type PlanLoad = Pick<BenchOptions, 'rate' | 'count' | 'durationMs' | 'inFlight' | 'size'>;

/** How one bench path publishes; the load itself (rate, count or duration, size, window) is the options'. */
export interface PlanPublisher extends Pick<DriveOptions, 'aborted' | 'onFailure'> {
  /**
   * Publishes `event` with `body` as its data: resolves when the broker (or hub) confirmed it,
   * rejects when it failed. Calls that have not settled are at most `inFlight` × the senders.
   */
  publish(event: PlannedEvent, body: Buffer): Promise<unknown>;
}

/**
 * Publishes the run's events, paced at `opts.rate` per second or flat out, until `opts.count` events
 * or `opts.durationMs`, with at most `opts.inFlight` × the senders awaiting their confirm (the
 * senders take turns). Each event's data carries the run id, its sequence number and its send
 * time, padded to `opts.size`. A confirm is counted in `sent`; a failure is recorded there too (so
 * a late delivery of it is not expected) and the loop goes on: failures are counted, not fatal.
 * Resolves once every publish has settled.
 */
export function publishPlan(
  opts: PlanLoad,
  plan: EventPlan,
  runId: string,
  sent: SentTally,
  publisher: PlanPublisher,
): Promise<DriveResult> {
  return drive({
    rate: opts.rate,
    stop: { total: opts.count, durationMs: opts.durationMs },
    maxInFlight: opts.inFlight * plan.senders.length,
    aborted: publisher.aborted,
    onFailure: publisher.onFailure,
    send(index) {
      const ev = eventAt(plan, index);
      const body = encodePayload({ run: runId, seq: ev.seq, ts: nowMs() }, opts.size);
      return publisher.publish(ev, body).then(
        () => sent.confirm(ev.sender, ev.type),
        (err: unknown) => {
          sent.fail(ev.sender, ev.seq);
          throw err;
        },
      );
    },
  });
}

/** The type of the probe events that open a run. */
const PROBE_TYPE = 'bench-probe';

/** The run id a run's probe events carry, so that receivers tell them from the run's own events. */
export function probeRunOf(runId: string): string {
  return `${runId}-probe`;
}

/** How one bench path sends its probe events and learns that one came through. */
export interface Probe {
  /** Publishes one probe event of `type` with `body` as its data; a rejection fails the warm-up. */
  publish(type: string, body: Buffer): Promise<unknown>;
  /** Whether a probe event has reached the receiver. */
  seen(): boolean;
  /** How long to wait for a probe before sending the next, ms. */
  everyMs: number;
  /** Checked every 10 ms: true ends the warm-up early (Ctrl-C). */
  aborted?(): boolean;
}

/**
 * The warm-up before the planned load: publishes a probe event (run `probeRunOf(runId)`, no padding)
 * every `probe.everyMs` until one comes through, `warmupMs` have passed or the probe is aborted,
 * looking every 10 ms. Resolves whether one came through; rejects with a failed publish's error.
 */
export async function warmUp(runId: string, warmupMs: number, probe: Probe): Promise<boolean> {
  const run = probeRunOf(runId);
  const deadline = performance.now() + warmupMs;
  let probes = 0;
  let next = 0;
  while (!probe.seen() && !probe.aborted?.() && performance.now() < deadline) {
    if (performance.now() >= next) {
      probes += 1;
      next = performance.now() + probe.everyMs;
      await probe.publish(PROBE_TYPE, encodePayload({ run, seq: probes, ts: nowMs() }, 0));
    }
    if (!probe.seen()) await sleep(10);
  }
  return probe.seen();
}

/** What the bench uses of a Herald SDK publisher: `createPublisher`'s (AMQP) and `createHubPublisher`'s (gRPC) both fit. */
export interface SdkPublisher {
  publish(type: string, data: Buffer, options: { contentType: string }): Promise<unknown>;
  close(): Promise<void>;
}

const JSON_DATA = { contentType: 'application/json' };

/**
 * A run's senders as Herald SDK publishers, one per sender of the plan, each admitting twice its
 * sender's in-flight window so that the send loop's window is what limits. The plan's events go
 * through their sender's publisher and probes through the first, both as JSON.
 */
export class SdkSenders {
  private readonly publishers: SdkPublisher[] = [];

  constructor(
    private readonly plan: EventPlan,
    private readonly inFlight: number,
  ) {}

  /** Creates the publishers with `create`; when it throws, those created so far are still closed by close(). */
  open(create: (sender: string, maxPending: number) => SdkPublisher): void {
    for (const sender of this.plan.senders) this.publishers.push(create(sender, this.inFlight * 2));
  }

  /** A PlanPublisher's `publish`: the event through its sender's publisher. */
  readonly publish = (ev: PlannedEvent, body: Buffer): Promise<unknown> =>
    this.publishers[ev.sender]!.publish(this.plan.types[ev.type]!, body, JSON_DATA);

  /** A Probe's `publish`: through the first sender's publisher. */
  readonly probe = (type: string, body: Buffer): Promise<unknown> => this.publishers[0]!.publish(type, body, JSON_DATA);

  /** Closes every publisher, each waiting for its pending publishes; a failed close is passed over. */
  async close(): Promise<void> {
    await Promise.allSettled(this.publishers.map((p) => p.close()));
  }
}
