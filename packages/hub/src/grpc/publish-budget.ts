import { BUDGETS } from '../caps/index.ts';

/** The hub-wide bound of PublishStream (BUDGETS.publishBytes, BUDGETS.publishEvents). */
export interface PublishBudgetLimits {
  /** Bytes of events taken at once, all streams together. */
  readonly maxBytes: number;
  /** Events taken at once, all streams together. */
  readonly maxEvents: number;
}

/** What a budget holds, for tests. */
export interface PublishBudgetStats {
  readonly maxBytes: number;
  readonly maxEvents: number;
  /** Taken now. */
  readonly bytes: number;
  readonly events: number;
  /** The most taken at once since the budget was made. */
  readonly peakBytes: number;
  readonly peakEvents: number;
  /** Streams in line for room now. */
  readonly waiting: number;
  /** Times a stream had to get in line. */
  readonly held: number;
}

/** Takes room for one event of `bytes`; false when it does not fit. */
export type Take = (bytes: number) => boolean;

/** A stream's side of the budget: what it read and holds back until the budget has room. */
export interface BudgetClaimant {
  /** Takes room for what it holds back, in order, while `take` lets it; true once nothing is held back. */
  admit(take: Take): boolean;
}

/**
 * The room every PublishStream of a hub shares for the events it read and has not answered yet.
 * A stream takes room per event; what does not fit it holds back and stops reading (so memory
 * stays within the budget plus the one request each stream was reading), and it gets in line.
 * Room given back goes to the streams in line first, in the order they got there, so a busy
 * stream cannot keep the others out; a stream that asks while others wait gets in line behind
 * them. An event larger than the whole budget is let in when nothing else is taken.
 */
export class PublishBudget {
  private bytes = 0;
  private events = 0;
  private peakBytes = 0;
  private peakEvents = 0;
  private heldCount = 0;
  private readonly line: BudgetClaimant[] = [];
  private readonly inLine = new Set<BudgetClaimant>();
  private serving = false;

  constructor(readonly limits: PublishBudgetLimits) {}

  /** Lets `c` take room at once when no stream waits before it, else puts it in line (once). */
  claim(c: BudgetClaimant): void {
    if (this.inLine.has(c)) return;
    if (this.line.length === 0 && c.admit(this.take)) return;
    this.line.push(c);
    this.inLine.add(c);
    this.heldCount++;
  }

  /** Gives back room for `events` events of `bytes` in all; the streams in line take it in turn. */
  release(bytes: number, events: number): void {
    this.bytes -= bytes;
    this.events -= events;
    this.serve();
  }

  /** A stream that ended leaves the line (what it took it gives back with release()). */
  leave(c: BudgetClaimant): void {
    if (!this.inLine.delete(c)) return;
    this.line.splice(this.line.indexOf(c), 1);
    this.serve();
  }

  stats(): PublishBudgetStats {
    return {
      maxBytes: this.limits.maxBytes,
      maxEvents: this.limits.maxEvents,
      bytes: this.bytes,
      events: this.events,
      peakBytes: this.peakBytes,
      peakEvents: this.peakEvents,
      waiting: this.line.length,
      held: this.heldCount,
    };
  }

  private readonly take: Take = (bytes) => {
    const fits = this.events + 1 <= this.limits.maxEvents && this.bytes + bytes <= this.limits.maxBytes;
    if (!fits && this.events > 0) return false;
    this.events += 1;
    this.bytes += bytes;
    if (this.bytes > this.peakBytes) this.peakBytes = this.bytes;
    if (this.events > this.peakEvents) this.peakEvents = this.events;
    return true;
  };

  /** The head of the line takes what fits; once it holds nothing back, the next one. */
  private serve(): void {
    if (this.serving) return;
    this.serving = true;
    try {
      for (;;) {
        const head = this.line[0];
        if (head === undefined || !head.admit(this.take)) return;
        this.line.shift();
        this.inLine.delete(head);
      }
    } finally {
      this.serving = false;
    }
  }
}

/** The table's sizes (HERALD_PUBLISH_MAX_BYTES, HERALD_PUBLISH_MAX_EVENTS at their defaults). */
export const DEFAULT_PUBLISH_BUDGET_LIMITS: PublishBudgetLimits = {
  maxBytes: BUDGETS.publishBytes.default,
  maxEvents: BUDGETS.publishEvents.default,
};
