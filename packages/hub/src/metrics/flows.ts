/** Sender×type series by default (HERALD_METRICS_MAX_FLOWS): the rest are counted under `other`. */
export const DEFAULT_MAX_FLOWS = 1000;

/** The label value that stands for every flow past the cap. */
export const OTHER = 'other';

/** Counts of one flow (sender×type), or of `other`. */
export interface Flow {
  readonly sender: string;
  readonly type: string;
  /** Events stored (in) and published to `herald.events` (out), since the hub started. */
  in: number;
  out: number;
  /** When an event of the flow was last stored, ms since the epoch; 0 when none was. */
  lastIn: number;
}

/**
 * Per-flow counts with a bounded label set: the first `maxFlows` distinct sender×type pairs get a
 * flow of their own, every later one is counted under `other`/`other`, so a flood of distinct types
 * costs a bounded number of series (Prometheus) and of map entries (here). One map lookup per run
 * of events of one flow: callers count a batch grouped as it comes.
 */
export class FlowCounts {
  private readonly flows = new Map<string, Flow>();
  readonly other: Flow = { sender: OTHER, type: OTHER, in: 0, out: 0, lastIn: 0 };

  constructor(readonly maxFlows: number) {}

  /** The flow of sender×type, created while under the cap, else `other`. */
  flow(sender: string, type: string): Flow {
    const key = `${sender}\u0000${type}`;
    let f = this.flows.get(key);
    if (f !== undefined) return f;
    if (this.flows.size >= this.maxFlows) return this.other;
    f = { sender, type, in: 0, out: 0, lastIn: 0 };
    this.flows.set(key, f);
    return f;
  }

  /** Every flow with its own labels, then `other` when anything was counted there. */
  all(): Flow[] {
    const list = [...this.flows.values()];
    if (this.other.in > 0 || this.other.out > 0) list.push(this.other);
    return list;
  }

  get size(): number {
    return this.flows.size;
  }
}

/** Counts `events` per flow: consecutive events of one flow cost one lookup. */
export function countByFlow(
  flows: FlowCounts,
  events: readonly { sender: string; type: string }[],
  add: (f: Flow, n: number) => void,
): void {
  let i = 0;
  while (i < events.length) {
    const first = events[i] as { sender: string; type: string };
    let j = i + 1;
    while (j < events.length && events[j]?.sender === first.sender && events[j]?.type === first.type) j++;
    add(flows.flow(first.sender, first.type), j - i);
    i = j;
  }
}

/** Rates over the last seconds, from snapshots of cumulative counters taken once a second. */
export interface Rates {
  readonly '1s': number;
  readonly '10s': number;
  readonly '60s': number;
}

/**
 * A ring of snapshots of named cumulative counters, one a second for the last minute, from which
 * the rates over the last 1, 10 and 60 seconds are read (per second). A counter that did not exist
 * at a snapshot counts from 0 there.
 */
export class RateWindow {
  private readonly ring: { at: number; values: Map<string, number> }[] = [];

  constructor(private readonly keep = 61) {}

  /** Records the counters' values now (call once a second). */
  snapshot(values: Map<string, number>, at: number): void {
    this.ring.push({ at, values });
    if (this.ring.length > this.keep) this.ring.shift();
  }

  /** The rates of counter `key` whose value now is `current`, per second. */
  rates(key: string, current: number, now: number): Rates {
    return { '1s': this.rate(key, current, now, 1), '10s': this.rate(key, current, now, 10), '60s': this.rate(key, current, now, 60) };
  }

  private rate(key: string, current: number, now: number, seconds: number): number {
    // The newest snapshot at least `seconds` old, else the oldest there is.
    let base: { at: number; values: Map<string, number> } | undefined;
    for (let i = this.ring.length - 1; i >= 0; i--) {
      const s = this.ring[i] as { at: number; values: Map<string, number> };
      base = s;
      if (now - s.at >= seconds * 1000 - 50) break;
    }
    if (base === undefined) return 0;
    const span = (now - base.at) / 1000;
    if (span <= 0) return 0;
    return Math.max(0, (current - (base.values.get(key) ?? 0)) / span);
  }
}
