import type { Matcher, Selector } from '@herald/core';
import type { Logger } from 'pino';
import type { CatalogStore, ObservedConsumer, ObservedProducer } from '../store/index.ts';
import { ConsumerIndex, PAUSE_EVERY } from './consumer-index.ts';
import { CATALOG_LIMITS } from './schemas.ts';

/** A consumer the observer attributes events to when its selector matches them. */
export interface ConsumerSource {
  readonly kind: 'subscription' | 'exchange';
  readonly name: string;
  readonly selector: Selector;
}

/** How often observations past CATALOG_LIMITS.observedKeepMs are deleted. */
const PURGE_EVERY_MS = 3600_000;

/**
 * Rows written per statement: the embedded store runs each statement in this thread, about 50 ms
 * for 1,000 rows on the shared 2-core test machine, so a flush never holds the event loop long.
 */
const ROWS_PER_WRITE = 1000;

/** How often the observer's clock is read. */
const CLOCK_MS = 100;

/** Counts of one (sender, type, user) since the last flush. */
interface Seen {
  events: number;
  first: number;
  last: number;
}

/**
 * Who produces and who consumes each event type (docs/catalog.md), counted in memory as events go
 * through ingest and written every `flushMs` in statements of ROWS_PER_WRITE rows: never a query per event.
 *
 * Bounds: at most `maxKeys` distinct (sender, type, user) per interval (default 10,000); beyond,
 * further new keys are not counted until the next flush (logged once per flush, with how many), so
 * a flood of distinct types cannot grow memory; and at most `maxConsumerRows` (type, consumer)
 * pairs written per flush (default 50,000; many types times many subscriptions with `*:*`).
 * Consumers are worked out at flush time, for the types seen in that interval, from `consumers()`
 * (durable subscriptions and exchanges whose selectors match), through a ConsumerIndex: the work
 * is about the pairs found plus the wildcard patterns under each type's sender, at most
 * `maxMatchWork` candidates per flush (default 5,000,000), and it yields to the event loop every
 * SLICE_MS, so the hub keeps serving during a flush of 10,000 types × 10,000 consumers. Types
 * not recorded yet are recorded only while the catalog observes fewer than maxObservedTypes; what
 * was not seen for observedKeepMs (30 days) is deleted once an hour.
 *
 * Failure: a flush that fails (store down) is logged and its counts are dropped: observation is a
 * description of the traffic, not part of the log.
 */
export class CatalogObserver {
  /** sender → type → user ('' none) → counts. Nested maps: no key string is built per event. */
  private seen = new Map<string, Map<string, Map<string, Seen>>>();
  private keys = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** Matchers of wildcard patterns by pattern text, kept while a consumer has that pattern. */
  private matchers: ReadonlyMap<string, Matcher> = new Map();
  /** A clock read every CLOCK_MS rather than per event (first and last seen are that precise). */
  private clock = Date.now();
  private clockTimer: NodeJS.Timeout | undefined;
  /** The counts the last event went to, and its key: runs of one type cost no map lookup. */
  private lastSeen: Seen | undefined;
  private lastSender = '';
  private lastType = '';
  private lastUser = '';
  private purgedAt = 0;

  constructor(
    private readonly store: CatalogStore,
    private readonly consumers: () => Promise<readonly ConsumerSource[]>,
    private readonly log: Logger,
    private readonly options: {
      flushMs?: number;
      maxKeys?: number;
      maxConsumerRows?: number;
      maxMatchWork?: number;
      now?: () => number;
      /** Called after each flush that wrote something. */
      flushed?: () => void;
    } = {},
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.options.flushMs ?? 5000);
    this.timer.unref();
    this.clockTimer = setInterval(() => {
      this.clock = Date.now();
    }, CLOCK_MS);
    this.clockTimer.unref();
  }

  /** Stops the timer and writes what was counted. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.clockTimer);
    this.timer = undefined;
    await this.flush();
  }

  /** One event of `sender`/`type`, published by RabbitMQ user `userId` (undefined or '' when the message named none). */
  seenEvent(sender: string, type: string, userId: unknown): void {
    const user = typeof userId === 'string' ? userId : '';
    const now = this.options.now === undefined ? this.clock : this.options.now();
    const hit = this.lastSeen;
    if (hit !== undefined && this.lastType === type && this.lastSender === sender && this.lastUser === user) {
      hit.events++;
      hit.last = now;
      return;
    }
    let types = this.seen.get(sender);
    let users = types?.get(type);
    const s = users?.get(user);
    if (s !== undefined) {
      s.events++;
      s.last = now;
      this.remember(sender, type, user, s);
      return;
    }
    if (this.keys >= (this.options.maxKeys ?? 10_000)) {
      this.dropped++;
      return;
    }
    if (types === undefined) {
      types = new Map();
      this.seen.set(sender, types);
    }
    if (users === undefined) {
      users = new Map();
      types.set(type, users);
    }
    const seen = { events: 1, first: now, last: now };
    users.set(user, seen);
    this.remember(sender, type, user, seen);
    this.keys++;
  }

  private remember(sender: string, type: string, user: string, seen: Seen): void {
    this.lastSeen = seen;
    this.lastSender = sender;
    this.lastType = type;
    this.lastUser = user;
  }

  /** Writes the counts since the last flush and the consumers of the types seen. One at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async write(): Promise<void> {
    const seen = this.seen;
    const dropped = this.dropped;
    this.seen = new Map();
    this.lastSeen = undefined;
    this.clock = Date.now();
    this.keys = 0;
    this.dropped = 0;
    if (dropped > 0)
      this.log.warn({ dropped }, 'catalog observation: too many distinct event types in one interval; some were not counted');
    if (seen.size === 0) return;
    const producers: ObservedProducer[] = [];
    const byType: { sender: string; type: string; first: number; last: number }[] = [];
    for (const [sender, types] of seen) {
      for (const [type, users] of types) {
        let first = Number.POSITIVE_INFINITY;
        let last = 0;
        for (const [userId, s] of users) {
          producers.push({ sender, type, userId, events: s.events, firstSeen: s.first, lastSeen: s.last });
          first = Math.min(first, s.first);
          last = Math.max(last, s.last);
        }
        byType.push({ sender, type, first, last });
      }
    }
    try {
      for (let i = 0; i < producers.length; i += ROWS_PER_WRITE)
        await this.store.recordProducers(producers.slice(i, i + ROWS_PER_WRITE), CATALOG_LIMITS.maxObservedTypes);
      const consumers = await this.consumersOf(byType);
      for (let i = 0; i < consumers.length; i += ROWS_PER_WRITE) await this.store.recordConsumers(consumers.slice(i, i + ROWS_PER_WRITE));
      await this.purge();
      this.options.flushed?.();
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'catalog observation: could not write the counts');
    }
  }

  /** Deletes what was not seen for observedKeepMs, at most once per PURGE_EVERY_MS (the first flush does). */
  private async purge(): Promise<void> {
    // The clock events are seen by: their first and last seen are of it.
    const now = this.options.now?.() ?? Date.now();
    if (now - this.purgedAt < PURGE_EVERY_MS) return;
    this.purgedAt = now;
    const n = await this.store.purgeObserved(now - CATALOG_LIMITS.observedKeepMs);
    if (n > 0)
      this.log.info(
        { rows: n, keptMs: CATALOG_LIMITS.observedKeepMs },
        'catalog observation: producers and consumers not seen for long deleted',
      );
  }

  private async consumersOf(types: { sender: string; type: string; first: number; last: number }[]): Promise<ObservedConsumer[]> {
    const sources = await this.consumers();
    const index = new ConsumerIndex(sources, this.matchers);
    const slice = new Slice();
    for (let i = 0; i < sources.length; i++) {
      index.add(i);
      await slice.check();
    }
    this.matchers = index.matchers;
    const out: ObservedConsumer[] = [];
    const maxRows = this.options.maxConsumerRows ?? 50_000;
    const maxWork = this.options.maxMatchWork ?? 5_000_000;
    let work = 0;
    let done = 0;
    pairs: for (const t of types) {
      if (out.length >= maxRows || work >= maxWork) break;
      for (const c of index.consumersOf(t.sender, t.type)) {
        if (c === undefined) {
          work += PAUSE_EVERY;
          if (work >= maxWork) break pairs;
          await slice.check();
          continue;
        }
        out.push({ sender: t.sender, type: t.type, kind: c.kind, name: c.name, firstSeen: t.first, lastSeen: t.last });
        if (out.length >= maxRows) break pairs;
      }
      done++;
      await slice.check();
    }
    if (out.length >= maxRows || done < types.length)
      this.log.warn(
        { written: out.length, types: types.length, typesLeft: types.length - done, work },
        'catalog observation: too many (type, consumer) pairs in one interval; some were not written',
      );
    return out;
  }
}

/** Work between two yields to the event loop, in ms: a flush of many types and consumers never holds the loop longer. */
const SLICE_MS = 5;

/** A run of synchronous work cut into slices of SLICE_MS, with a turn of the event loop between. */
class Slice {
  private started = performance.now();

  async check(): Promise<void> {
    if (performance.now() - this.started < SLICE_MS) return;
    await new Promise((resolve) => setImmediate(resolve));
    this.started = performance.now();
  }
}
