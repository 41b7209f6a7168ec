import { setTimeout as sleep } from 'node:timers/promises';
/**
 * Sending at a steady rate or flat out. A timer ticks about every millisecond and sends whatever the
 * schedule says is due (a token bucket filled at `rate`/s since the start), so 1,000/s and 10,000/s
 * both work without a timer per event, and a slow tick is caught up by the next one.
 */

/**
 * How many events are due at `elapsedMs` after the start at `rate` events/s, when `issued` are out
 * already; at most `maxBurst`, so a long stall (GC, backpressure) is caught up over a few ticks
 * instead of one burst.
 */
export function dueEvents(elapsedMs: number, rate: number, issued: number, maxBurst: number): number {
  const due = Math.floor((elapsedMs * rate) / 1000) - issued;
  return Math.max(0, Math.min(due, maxBurst));
}

/** The largest burst per tick: 20 ms worth of events, at least one. */
export function burstFor(rate: number): number {
  return Math.max(1, Math.ceil(rate / 50));
}

/** When to stop: after `total` events, or (flat out with a duration) after `durationMs`. */
export interface StopRule {
  total?: number | undefined;
  durationMs?: number | undefined;
}

/**
 * The number of events a run sends, when known in advance: `count`, or `rate × duration` at a
 * fixed rate. Undefined when flat out for a duration (time decides).
 */
export function plannedTotal(rate: number | 'max', rule: StopRule): number | undefined {
  if (rule.total !== undefined) return rule.total;
  if (rate !== 'max' && rule.durationMs !== undefined) return Math.round((rate * rule.durationMs) / 1000);
  return undefined;
}

/** What one send loop did. */
export interface DriveResult {
  issued: number;
  confirmed: number;
  failed: number;
  /** performance.now() when the first event was issued and when the last confirm (or failure) came. */
  startedAt: number;
  endedAt: number;
}

export interface DriveOptions {
  rate: number | 'max';
  stop: StopRule;
  /** Publishes awaiting their confirm at most; the loop waits for room beyond that. */
  maxInFlight: number;
  /** Sends the `index`-th event; resolves when it is confirmed, rejects when it failed. */
  send(index: number): Promise<void>;
  /** Called once per failed send (the loop goes on: failures are counted, not fatal). */
  onFailure?(index: number, err: unknown): void;
  /** Checked between ticks: true stops the loop early (Ctrl-C, a fatal error elsewhere). */
  aborted?(): boolean;
}

/** Runs the send loop to the end and waits for every confirm. */
export async function drive(opts: DriveOptions): Promise<DriveResult> {
  const total = plannedTotal(opts.rate, opts.stop);
  const res: DriveResult = { issued: 0, confirmed: 0, failed: 0, startedAt: performance.now(), endedAt: 0 };
  let inFlight = 0;
  let wake: (() => void) | undefined;
  const settled = () => {
    inFlight -= 1;
    res.endedAt = performance.now();
    const w = wake;
    wake = undefined;
    w?.();
  };
  const issue = () => {
    const index = res.issued++;
    inFlight += 1;
    opts.send(index).then(
      () => {
        res.confirmed += 1;
        settled();
      },
      (err: unknown) => {
        res.failed += 1;
        opts.onFailure?.(index, err);
        settled();
      },
    );
  };
  const more = () =>
    !opts.aborted?.() &&
    (total !== undefined ? res.issued < total : performance.now() - res.startedAt < (opts.stop.durationMs ?? Number.POSITIVE_INFINITY));
  const room = () => new Promise<void>((resolve) => (wake = resolve));

  if (opts.rate === 'max') {
    let sinceYield = 0;
    while (more()) {
      if (inFlight >= opts.maxInFlight) {
        await room();
        sinceYield = 0;
        continue;
      }
      issue();
      // Let sockets and timers run now and then even when confirms keep up.
      if (++sinceYield >= 500) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  } else {
    const rate = opts.rate;
    const burst = burstFor(rate);
    while (more()) {
      let n = dueEvents(performance.now() - res.startedAt, rate, res.issued, burst);
      while (n-- > 0 && inFlight < opts.maxInFlight && more()) issue();
      await sleep(1);
    }
  }
  while (inFlight > 0) await room();
  if (res.endedAt === 0) res.endedAt = performance.now();
  return res;
}
