import { compileMatcher } from '@herald/core';
import * as hdr from 'hdr-histogram-js';
import type { EventPlan } from './plan.ts';

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** A growable bit set: one bit per sequence number, so a million events cost 125 KB per sender. */
class BitSet {
  private bits = new Uint8Array(1024);

  /** Sets bit `i`; returns whether it was set before. */
  testAndSet(i: number): boolean {
    const byte = i >>> 3;
    if (byte >= this.bits.length) {
      const grown = new Uint8Array(Math.max(this.bits.length * 2, byte + 1));
      grown.set(this.bits);
      this.bits = grown;
    }
    const mask = 1 << (i & 7);
    const was = (this.bits[byte]! & mask) !== 0;
    this.bits[byte]! |= mask;
    return was;
  }

  has(i: number): boolean {
    const byte = i >>> 3;
    return byte < this.bits.length && (this.bits[byte]! & (1 << (i & 7))) !== 0;
  }
}

/** Builds the latency histogram: microseconds, 3 significant digits, growing as needed. */
export function createLatencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

/** Percentiles of a microsecond histogram, in milliseconds rounded to the microsecond. */
export function latencySummary(h: hdr.Histogram): LatencySummary {
  if (h.totalCount === 0) return { p50: 0, p90: 0, p99: 0, max: 0 };
  // Percentiles are the top of their bucket and may overshoot the exact max; clamp so p ≤ max.
  const max = h.maxValue;
  const ms = (us: number) => Math.round(Math.min(us, max)) / 1000;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(max),
  };
}

/**
 * What was sent, per sender × type, counting only confirmed publishes. Expected counts are derived
 * from it and the selector, so nothing per event is kept on the sending side.
 */
export class SentTally {
  /** Confirmed events per [sender][type]. */
  readonly counts: number[][];
  /** Publishes that failed, as [sender, seq]: kept so a delivery of one is not counted as expected. */
  readonly failed: [number, number][] = [];
  confirmed = 0;

  constructor(readonly plan: EventPlan) {
    this.counts = plan.senders.map(() => plan.types.map(() => 0));
  }

  confirm(sender: number, type: number): void {
    this.counts[sender]![type]! += 1;
    this.confirmed += 1;
  }

  fail(sender: number, seq: number): void {
    this.failed.push([sender, seq]);
  }

  /** Confirmed events as `{ s1: { t1: n, … }, … }`. */
  bySender(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    this.plan.senders.forEach((s, i) => {
      const row: Record<string, number> = {};
      this.plan.types.forEach((t, j) => {
        row[t] = this.counts[i]![j]!;
      });
      out[s] = row;
    });
    return out;
  }
}

/** The final figures of one receiver. */
export interface ReceiverFigures {
  expected: number;
  /** Every delivery of this run's events, duplicates included. */
  received: number;
  /** Expected events never received. */
  lost: number;
  /** Deliveries of an event already received. */
  duplicates: number;
  /** First deliveries of an event whose sender had already delivered a higher sequence number. */
  reordered: number;
  /** Deliveries the selector should not have let through (or of publishes that reported failure). */
  unexpected: number;
  latencyMs: LatencySummary;
}

/**
 * Counts what one receiver got. Memory: a bit per (sender, seq) received and a max-seq per sender,
 * so 1M events cost about 125 KB per receiver — no per-event list or Set.
 */
export class ReceiverTally {
  private readonly match: boolean[][];
  private readonly seen: BitSet[];
  private readonly maxSeq: number[];
  /** Distinct deliveries whose sender×type the selector matches. */
  private distinctMatched = 0;
  received = 0;
  duplicates = 0;
  reordered = 0;
  unexpected = 0;
  /** performance.now() of the first and last delivery. */
  firstAt = 0;
  lastAt = 0;
  readonly latency = createLatencyHistogram();

  constructor(
    readonly plan: EventPlan,
    selector: readonly string[],
  ) {
    const m = compileMatcher(selector);
    this.match = plan.senders.map((s) => plan.types.map((t) => m(s, t)));
    this.seen = plan.senders.map(() => new BitSet());
    this.maxSeq = plan.senders.map(() => -1);
  }

  /** Whether this receiver's selector matches sender×type (indexes into the plan). */
  matches(sender: number, type: number): boolean {
    return this.match[sender]![type]!;
  }

  /** Records one delivery. `latencyUs` is the send→receive time; `at` is performance.now(). */
  record(sender: number, type: number, seq: number, latencyUs: number, at: number): void {
    this.received += 1;
    if (this.firstAt === 0) this.firstAt = at;
    this.lastAt = at;
    if (this.seen[sender]!.testAndSet(seq)) {
      this.duplicates += 1;
      return;
    }
    if (seq < this.maxSeq[sender]!) this.reordered += 1;
    else this.maxSeq[sender] = seq;
    if (this.match[sender]![type]) this.distinctMatched += 1;
    else this.unexpected += 1;
    this.latency.recordValue(Math.max(1, Math.round(latencyUs)));
  }

  /** Σ sent[s][t] over the pairs the selector matches. */
  expectedFrom(sent: SentTally): number {
    let n = 0;
    for (let s = 0; s < this.match.length; s++) {
      for (let t = 0; t < this.match[s]!.length; t++) if (this.match[s]![t]) n += sent.counts[s]![t]!;
    }
    return n;
  }

  /** The figures once the run is over; `typeOf` recomputes the type of a failed publish. */
  figures(sent: SentTally, typeOf: (sender: number, seq: number) => number): ReceiverFigures {
    const expected = this.expectedFrom(sent);
    let matchedDelivered = this.distinctMatched;
    let unexpected = this.unexpected;
    // A publish may fail (nack, timeout) yet the broker may have routed it: such a delivery is
    // not one of the expected events.
    for (const [s, seq] of sent.failed) {
      if (this.seen[s]!.has(seq) && this.match[s]![typeOf(s, seq)]) {
        matchedDelivered -= 1;
        unexpected += 1;
      }
    }
    return {
      expected,
      received: this.received,
      lost: Math.max(0, expected - matchedDelivered),
      duplicates: this.duplicates,
      reordered: this.reordered,
      unexpected,
      latencyMs: latencySummary(this.latency),
    };
  }

  /** Distinct expected deliveries so far (for progress and for knowing when the drain is done). */
  get distinct(): number {
    return this.distinctMatched;
  }
}
