import type { Matcher, Selector } from '@herald/core';
import type { AttachedConsumer } from './consumer.ts';

/**
 * One subscription in memory (Sub): its acknowledged offset, its consumers, its waiting pulls and
 * replays, and whether it is awake (the receivers feed only awake ones). The manager (manager.ts)
 * keeps the set; consumer.ts has an attached consumer's state machine.
 */

/** A replay into one subscription; its row in the replays table follows `position` and `count` per chunk. */
export interface ReplayJob {
  readonly id: string;
  readonly matches: Matcher;
  /** Read up to here (exclusive start of the next read); saved with each chunk sent. */
  position: bigint;
  upTo: bigint;
  /** Events sent so far. */
  count: number;
  capped: boolean;
  readonly since: number | undefined;
  readonly until: number | undefined;
}

/** Told when a subscription wakes (a consumer active, or a pull waiting) and when it sleeps again. */
export type AwakeListener = (sub: Sub, awake: boolean) => void;

/** The waiting pulls of a subscription: adding the first or removing the last tells its Sub. */
class Waiters extends Set<() => void> {
  constructor(private readonly changed: () => void) {
    super();
  }
  override add(w: () => void): this {
    super.add(w);
    this.changed();
    return this;
  }
  override delete(w: () => void): boolean {
    const had = super.delete(w);
    if (had) this.changed();
    return had;
  }
  override clear(): void {
    super.clear();
    this.changed();
  }
}

/** One subscription in memory; the store has its row. */
export class Sub {
  acked: bigint;
  saved: bigint;
  private current: AttachedConsumer | undefined;
  /** What `onAwake` was last told. */
  private wasAwake = false;
  readonly standby: AttachedConsumer[] = [];
  httpUntil = 0;
  readonly replays: ReplayJob[] = [];
  readonly waiters: Set<() => void> = new Waiters(() => this.awakeChanged());
  /** Serializes HTTP pulls of this subscription. */
  pulling: Promise<unknown> = Promise.resolve();
  /** Serializes replay reads (a pull and a consumer taking over may read at once): no chunk goes twice. */
  replaying: Promise<unknown> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly selector: Selector,
    readonly createdAt: number,
    acked: bigint,
    /** Told on each change of `awake`, so the receivers keep the awake selectors without walking every subscription. */
    private readonly onAwake: AwakeListener | undefined = undefined,
  ) {
    this.acked = acked;
    this.saved = acked;
  }

  /** The consumer that delivers now (standbys wait behind it). */
  get active(): AttachedConsumer | undefined {
    return this.current;
  }

  set active(c: AttachedConsumer | undefined) {
    this.current = c;
    this.awakeChanged();
  }

  /** Live events are wanted: a consumer is active, or a pull waits. */
  get awake(): boolean {
    return this.current !== undefined || this.waiters.size > 0;
  }

  private awakeChanged(): void {
    const now = this.awake;
    if (now === this.wasAwake) return;
    this.wasAwake = now;
    this.onAwake?.(this, now);
  }

  wakeWaiters(): void {
    for (const w of [...this.waiters]) w();
  }

  /** The hub ends the active consumer and the standbys (deleted, stopping); waiting pulls wake. */
  endConsumers(reason: string): void {
    this.active?.end(reason);
    for (const c of this.standby) c.end(reason);
    this.active = undefined;
    this.standby.length = 0;
    this.wakeWaiters();
  }
}
