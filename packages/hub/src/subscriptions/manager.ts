import { compileMatcher, ErrorCodes, HeraldError, type Matcher, parseSelector, type Selector, ValidationError } from '@herald/core';
import { type Logger, pino } from 'pino';
import { CAPS, capReached } from '../caps/index.ts';
import { createReplayStore, type ReplayStore } from '../replays/index.ts';
import type { SqlExecutor } from '../store/driver.ts';
import { queryMayHaveMore } from '../store/sql-store.ts';
import { READ_MAX_BYTES, type Store, type StoredEvent } from '../store/types.ts';
import { createReceivers, type Receivers } from './receivers.ts';
import { assertSubscriptionName, normalizeStart } from './start-position.ts';
import { createSubscriptionStore, receiverQueue, type SubscriptionRecord, type SubscriptionStore } from './subscription-store.ts';
import type {
  AttachRequest,
  Consumer,
  DeliveredEvent,
  StartPosition,
  SubscriptionInput,
  SubscriptionManager,
  SubscriptionReplay,
  SubscriptionView,
} from './types.ts';

/** What the manager needs. */
export interface SubscriptionManagerOptions {
  /** The log: catch-up reads, replays, the head. */
  store: Pick<Store, 'query' | 'headOffset'>;
  /**
   * Runs the SQL of the subscriptions and receivers tables (migration 003), reads held_events and
   * keeps the replays into subscriptions in the replays table (002).
   */
  sql: SqlExecutor;
  /** RabbitMQ, for the receiver queues (the manager opens a connection of its own). */
  amqpUrl: string;
  logger?: Logger | undefined;
  /** `x-max-length` of each receiver queue (messages; the oldest are dropped beyond). Default 10,000. */
  receiverMaxLength?: number | undefined;
  /** The RabbitMQ queue type of the receiver queues (HERALD_QUEUE_TYPE). Default `classic`. */
  receiverQueueType?: 'classic' | 'quorum' | undefined;
  /**
   * The highest offset the dispatcher has forwarded or durably held (router mode). Events above it
   * are not read from the log yet: they may still be held by a pause the manager cannot see yet.
   * Default: no limit (tests that store without a dispatcher).
   */
  dispatched?: (() => bigint | undefined) | undefined;
  /**
   * True while pauses may hold events (`held_events` may have rows): then a subscription's horizon is
   * checked against them. Default: always checked.
   */
  holding?: (() => boolean) | undefined;
  /**
   * The highest offset in the log as the writer knows it (router mode: ingest's head, which moves
   * before an event is forwarded). A live event above it is checked against the log's head before
   * it is taken (see onLive). Default: the store is asked.
   */
  logHead?: (() => bigint | undefined) | undefined;
  /** Events read from the log per catch-up step (bounded memory per consumer). Default 1000. */
  chunkSize?: number | undefined;
  /** Subscriptions this manager keeps (HERALD_MAX_SUBSCRIPTIONS); creating one more is LIMIT_EXCEEDED. Default 10,000. */
  maxSubscriptions?: number | undefined;
  /** Counts deliveries per subscription (metrics/metrics.ts). Default: nothing counted. */
  metrics?: SubscriptionMetrics | undefined;
  /** How often acknowledged offsets are saved, in one UPDATE. Default 200 ms. */
  flushMs?: number | undefined;
  /**
   * Live events buffered per consumer while it catches up or is slow; beyond, the buffer is dropped
   * and the consumer reads the log instead. Default 5000.
   */
  liveBufferMax?: number | undefined;
}

/** What the manager reports as it delivers. */
export interface SubscriptionMetrics {
  deliveredTo(subscription: string, n: number): void;
  forgetSubscription(subscription: string): void;
}

/** A subscription counts as active this long after an HTTP pull. */
const HTTP_ACTIVE_MS = 30_000;
/** An idle live consumer looks at the log this often (a safety net: a live message may never come). */
const IDLE_CHECK_MS = 2000;
const DEFAULT_MAX_IN_FLIGHT = 100;
const MAX_IN_FLIGHT = 10_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const min = (a: bigint | undefined, b: bigint | undefined) => (a === undefined ? b : b === undefined ? a : a < b ? a : b);

/** A replay into one subscription; its row in the replays table follows `position` and `count` per chunk. */
interface ReplayJob {
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

/** One subscription in memory; the store has its row. */
class Sub {
  acked: bigint;
  saved: bigint;
  active: AttachedConsumer | undefined;
  readonly standby: AttachedConsumer[] = [];
  httpUntil = 0;
  readonly replays: ReplayJob[] = [];
  readonly waiters = new Set<() => void>();
  /** Serializes HTTP pulls of this subscription. */
  pulling: Promise<unknown> = Promise.resolve();
  /** Serializes replay reads (a pull and a consumer taking over may read at once): no chunk goes twice. */
  replaying: Promise<unknown> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly selector: Selector,
    readonly createdAt: number,
    acked: bigint,
  ) {
    this.acked = acked;
    this.saved = acked;
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

interface Fill {
  events: DeliveredEvent[];
  /** Something changed (mode): fill again at once. */
  again?: boolean;
  /** The log has matching events the horizon keeps back (a pause, dispatch in progress): retry with backoff. */
  stalled?: boolean;
}

/** The manager's internals a consumer uses. */
interface Core {
  readonly store: Pick<Store, 'query' | 'headOffset'>;
  readonly subStore: SubscriptionStore;
  readonly chunk: number;
  readonly liveBufferMax: number;
  /** Matching events after `after`, at most `limit`, never past the log horizon (pauses, dispatch). */
  readLog(sub: Sub, after: bigint, limit: number): Promise<StoredEvent[]>;
  readReplay(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]>;
  acked(sub: Sub, offset: bigint): void;
  readonly metrics: SubscriptionMetrics | undefined;
  detach(c: AttachedConsumer): Promise<void>;
  warn(err: unknown, c: AttachedConsumer): void;
}

/**
 * An attached consumer. While active it keeps `position`, the highest offset delivered (≥ acked).
 * Catch-up reads the log after `position` in chunks until a read returns less than a chunk; then it
 * is live: events from the receiver with an offset ≤ position are skipped, and a live batch is
 * delivered from the messages only when it provably leaves no matching event out (its offsets follow
 * on from position without a hole, or one offsets-only log query over the range finds nothing the
 * batch lacks); otherwise the log is read instead.
 */
class AttachedConsumer implements Consumer {
  readonly active: Promise<void>;
  readonly ended: Promise<string>;
  state: 'standby' | 'active' | 'closed' = 'standby';
  position = 0n;
  private resolveActive!: () => void;
  private rejectActive!: (err: Error) => void;
  private resolveEnded!: (reason: string) => void;
  private mode: 'catchup' | 'live' = 'catchup';
  private chunk: StoredEvent[] = [];
  private chunkFull = false;
  /**
   * Catch-up reads the next chunk while the consumer takes the current one, so the log read and the
   * delivery overlap. Used only when the position is still where it was read from.
   */
  private prefetched: { after: bigint; rows: Promise<StoredEvent[]> } | undefined;
  private live: StoredEvent[] = [];
  /** The live path saw the log ahead of the batch; if the next log read finds nothing, it is held back. */
  private gapPending = false;
  /** Live events up to here were dropped (buffer overflow): the log must be read up to here before going live. */
  private dropped = 0n;
  /** When the log was last read (an idle live consumer looks again after IDLE_CHECK_MS). */
  private lastRead = 0;
  private stallMs = 20;
  /** While held back (stalled), live events do not wake the consumer before this time: no query storm. */
  private quietUntil = 0;
  /** Delivered, not yet acknowledged offsets, in delivery order (replayed ones included). */
  private inflight: bigint[] = [];
  private replaysInFlight = 0;
  private wake: (() => void) | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly core: Core,
    readonly sub: Sub,
    readonly label: string,
    readonly maxInFlight: number,
    /** The client's Last-Event-ID (SSE): acknowledged when this consumer becomes active. */
    private readonly resumeAfter: bigint | undefined = undefined,
  ) {
    this.active = new Promise<void>((resolve, reject) => {
      this.resolveActive = resolve;
      this.rejectActive = reject;
    });
    this.active.catch(() => undefined);
    this.ended = new Promise<string>((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  get name(): string {
    return this.sub.name;
  }

  activate(): void {
    this.state = 'active';
    // The client says it has everything up to here: that is an ack, and it resumes after it.
    if (this.resumeAfter !== undefined) this.core.acked(this.sub, this.resumeAfter);
    this.position = this.sub.acked;
    this.mode = 'catchup';
    this.live = [];
    this.chunk = [];
    this.prefetched = undefined;
    this.dropped = 0n;
    this.gapPending = false;
    this.resolveActive();
  }

  /** The hub ends this consumer (deleted, stopping). */
  end(reason: string): void {
    if (this.state === 'closed') return;
    const wasStandby = this.state === 'standby';
    this.state = 'closed';
    if (wasStandby) this.rejectActive(new HeraldError(ErrorCodes.CLOSED, `consumer ended: ${reason}`));
    this.resolveEnded(reason);
    this.live = [];
    this.chunk = [];
    this.prefetched = undefined;
    this.wake?.();
  }

  onLive(events: readonly StoredEvent[]): void {
    if (this.state !== 'active') return;
    for (const e of events) if (e.offset > this.position) this.live.push(e);
    if (this.live.length > this.core.liveBufferMax) {
      for (const e of this.live) if (e.offset > this.dropped) this.dropped = e.offset;
      this.live = [];
      this.mode = 'catchup';
    }
    if (this.quietUntil === 0 || Date.now() >= this.quietUntil) this.wake?.();
  }

  /** The receivers reconnected: what was published meanwhile is in the log only. */
  reset(): void {
    if (this.state !== 'active') return;
    this.mode = 'catchup';
    this.wake?.();
  }

  next(max: number, signal?: AbortSignal): Promise<DeliveredEvent[]> {
    const run = this.chain.then(() => this.doNext(max, signal));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async doNext(max: number, signal?: AbortSignal): Promise<DeliveredEvent[]> {
    if (this.state === 'standby' && !signal?.aborted) {
      // A standby waits until it takes over, is ended, or the caller gives up.
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener('abort', done);
          resolve();
        };
        signal?.addEventListener('abort', done, { once: true });
        this.active.then(done, done);
      });
    }
    const want = Math.max(1, Math.trunc(max) || 1);
    for (;;) {
      if (this.state !== 'active' || signal?.aborted) return [];
      const room = Math.min(want, this.maxInFlight - (this.inflight.length - this.inflightHead));
      let waitMs = IDLE_CHECK_MS;
      if (room > 0) {
        let r: Fill;
        try {
          r = await this.fill(room);
        } catch (err) {
          if (this.state !== 'active') return [];
          // The store failed: keep the consumer, try again with backoff (its position is unchanged).
          this.core.warn(err, this);
          r = { events: [], stalled: true };
        }
        if (this.state !== 'active') return [];
        if (r.events.length > 0) {
          this.stallMs = 20;
          this.quietUntil = 0;
          this.delivered(r.events);
          return r.events;
        }
        if (r.again) continue;
        if (r.stalled) {
          waitMs = this.stallMs;
          // Held back for a while (a pause): live events stop waking it, so it asks the store at
          // most a few times a second; a short hold (dispatch in progress) still wakes at once.
          if (waitMs >= 80) this.quietUntil = Date.now() + waitMs;
          this.stallMs = Math.min(this.stallMs * 2, 500);
        }
      }
      await this.sleep(waitMs, signal);
    }
  }

  /** Resolves after `ms`, when woken (live events, acks, close) or aborted. */
  private sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      this.wake = done;
      signal?.addEventListener('abort', done, { once: true });
      timer = setTimeout(done, ms);
    });
  }

  private inflightHead = 0;

  private delivered(events: readonly DeliveredEvent[]): void {
    if (events.length > 0) this.core.metrics?.deliveredTo(this.sub.name, events.length);
    for (const e of events) {
      this.inflight.push(e.offset);
      if (e.replay !== undefined) this.replaysInFlight++;
      else if (e.offset > this.position) this.position = e.offset;
    }
  }

  private async fill(room: number): Promise<Fill> {
    const core = this.core;
    const sub = this.sub;
    if (sub.replays.length > 0) {
      const replayed = await core.readReplay(sub, room, this.position);
      if (replayed.length > 0) return { events: replayed };
    }
    if (this.mode === 'catchup') {
      if (this.chunk.length === 0) {
        const pre = this.prefetched;
        this.prefetched = undefined;
        const from = this.position;
        const rows = await (pre && pre.after === from ? pre.rows : this.readChunk(from));
        if (this.state !== 'active') return { events: [] };
        // An ack through another transport moved this consumer past what it read (skipTo).
        if (this.position !== from) return { events: [], again: true };
        this.lastRead = Date.now();
        this.chunk = rows;
        this.chunkFull = queryMayHaveMore({ limit: core.chunk, maxBytes: READ_MAX_BYTES }, rows);
        if (this.chunkFull) {
          const after = (rows[rows.length - 1] as StoredEvent).offset;
          const next = this.readChunk(after);
          next.catch(() => undefined); // a failure surfaces when the chunk is used, and is retried there
          this.prefetched = { after, rows: next };
        }
        if (rows.length === 0) {
          if (this.position < this.dropped) return { events: [], stalled: true }; // not dispatched yet: soon
          this.mode = 'live';
          if (this.gapPending) {
            this.gapPending = false;
            return { events: [], stalled: true };
          }
          return { events: [], again: this.live.length > 0 };
        }
      }
      this.gapPending = false;
      const take = this.chunk.length <= room ? this.chunk : this.chunk.slice(0, room);
      this.chunk = this.chunk.length <= room ? [] : this.chunk.slice(room);
      const last = (take[take.length - 1] as StoredEvent).offset;
      if (this.chunk.length === 0 && !this.chunkFull && last >= this.dropped) this.mode = 'live';
      return { events: take };
    }
    // live
    const position = this.position;
    let live = this.live;
    let sorted = true;
    let keep = 0;
    for (let i = 0; i < live.length; i++) {
      const e = live[i] as StoredEvent;
      if (e.offset <= position) continue;
      if (keep > 0 && e.offset <= (live[keep - 1] as StoredEvent).offset) sorted = false;
      live[keep++] = e;
    }
    live.length = keep;
    if (keep === 0) {
      if (Date.now() - this.lastRead < IDLE_CHECK_MS) return { events: [] };
      // Idle: look at the log now and then, in case a live message never comes.
      this.mode = 'catchup';
      return { events: [], again: true };
    }
    if (!sorted) {
      live.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
      live = live.filter((e, i) => i === 0 || e.offset !== (live[i - 1] as StoredEvent).offset);
      this.live = live;
    }
    const batch = live.slice(0, room);
    const last = (batch[batch.length - 1] as StoredEvent).offset;
    let contiguous = (batch[0] as StoredEvent).offset === position + 1n;
    for (let i = 1; contiguous && i < batch.length; i++)
      contiguous = (batch[i] as StoredEvent).offset === (batch[i - 1] as StoredEvent).offset + 1n;
    if (!contiguous) {
      // One offsets-only query for the whole batch: does the log have a matching offset it lacks?
      const inLog = await core.subStore.offsets(sub.selector, position, last, batch.length + 1);
      if (this.state !== 'active' || this.position !== position) return { events: [], again: true };
      const have = new Set(batch.map((e) => e.offset));
      if (inLog.length > batch.length || inLog.some((o) => !have.has(o))) {
        // Overflow (drop-head), a pause, a lost connection: the log has what the queue lost.
        this.mode = 'catchup';
        this.gapPending = true;
        return { events: [], again: true };
      }
    }
    // (events may have arrived during the query: keep those above the batch)
    this.live = this.live.filter((e) => e.offset > last);
    return { events: batch };
  }

  /** One catch-up read. */
  private readChunk(after: bigint): Promise<StoredEvent[]> {
    return this.core.readLog(this.sub, after, this.core.chunk);
  }

  ack(offset: bigint): void {
    if (typeof offset !== 'bigint' || offset < 0n)
      throw new ValidationError(ErrorCodes.INVALID_REQUEST, `invalid ack offset ${String(offset)}`, { details: { parameter: 'offset' } });
    if (offset > this.position)
      throw new ValidationError(ErrorCodes.INVALID_REQUEST, `ack ${offset} is above the last delivered offset ${this.position}`, {
        details: { parameter: 'offset', offset: offset.toString(), delivered: this.position.toString() },
      });
    this.trimInflight(offset);
    this.core.acked(this.sub, offset);
    this.wake?.();
  }

  release(offset: bigint): void {
    this.trimInflight(offset);
    this.wake?.();
  }

  /**
   * An ack through another transport (HTTP) above what this consumer delivered: events another
   * consumer (an HTTP pull before this one attached) got and the client now says are done. They are
   * acknowledged, and this consumer moves past them instead of delivering them (it reads the log
   * from there on).
   */
  skipTo(offset: bigint): void {
    this.trimInflight(offset);
    this.core.acked(this.sub, offset);
    if (this.state !== 'active' || offset <= this.position) return;
    this.position = offset;
    this.mode = 'catchup';
    this.chunk = [];
    this.prefetched = undefined;
    this.live = this.live.filter((e) => e.offset > offset);
    if (this.dropped <= offset) this.dropped = 0n;
    this.wake?.();
  }

  /** Acknowledgements through another path (HTTP ack) free the window too. */
  trimInflight(offset: bigint): void {
    const f = this.inflight;
    while (this.inflightHead < f.length && (f[this.inflightHead] as bigint) <= offset) this.inflightHead++;
    if (this.replaysInFlight > 0) {
      const rest = f.slice(this.inflightHead).filter((o) => o > offset);
      this.replaysInFlight = Math.min(this.replaysInFlight, rest.length);
      this.inflight = rest;
      this.inflightHead = 0;
    } else if (this.inflightHead > 1024 && this.inflightHead * 2 > f.length) {
      this.inflight = f.slice(this.inflightHead);
      this.inflightHead = 0;
    }
    if (this.inflightHead === this.inflight.length && this.replaysInFlight > 0) this.replaysInFlight = 0;
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasStandby = this.state === 'standby';
    this.state = 'closed';
    if (wasStandby) this.rejectActive(new HeraldError(ErrorCodes.CLOSED, 'consumer closed before it became active'));
    this.resolveEnded('closed');
    this.live = [];
    this.chunk = [];
    this.prefetched = undefined;
    this.wake?.();
    await this.core.detach(this);
  }
}

/**
 * Creates the subscription manager (DESIGN.md §3.5). Nothing happens before start(), which loads
 * every subscription and receiver from the store, declares the receiver queues again and consumes
 * them; until it resolves every other method rejects with UNAVAILABLE.
 *
 * Failure: create, delete, list, get, pull, ack and replay reject when the store fails (nothing is
 * half-written). A consumer's next() does not: while the store fails it retries with backoff (up to
 * 0.5 s between tries) and resolves once it can deliver, or [] when aborted or ended. Acknowledged
 * offsets are saved every `flushMs` (and on close and stop); a failed save is retried on the next
 * flush, so after a crash a subscription re-delivers what was acknowledged but not saved, and
 * never skips.
 *
 * Reconnect: the receivers reconnect to RabbitMQ by themselves (backoff to 5 s); meanwhile
 * consumers read the log, which is the source of truth, so nothing is lost, only later.
 */
export function createSubscriptionManager(options: SubscriptionManagerOptions): SubscriptionManager {
  return new Manager(options);
}

class Manager implements SubscriptionManager, Core {
  readonly store: Pick<Store, 'query' | 'headOffset'>;
  readonly subStore: SubscriptionStore;
  readonly chunk: number;
  readonly liveBufferMax: number;
  private readonly replayStore: ReplayStore;
  private readonly log: Logger;
  private readonly receivers: Receivers;
  private readonly dispatched: (() => bigint | undefined) | undefined;
  private readonly holding: (() => boolean) | undefined;
  private readonly logHead: (() => bigint | undefined) | undefined;
  /** The log's head as last read from the store, for live events above what logHead says. */
  private knownHead = 0n;
  /** Live deliveries that wait for the head to be read, in order; undefined when none wait. */
  private headCheck: Promise<void> | undefined;
  /** Live messages left out for an offset beyond the log's head, since the last warning. */
  private forged = { count: 0, warnedAt: 0 };
  private readonly flushMs: number;
  private readonly maxSubscriptions: number;
  readonly metrics: SubscriptionMetrics | undefined;
  private readonly receiverMaxLength: number;
  private readonly subs = new Map<string, Sub>();
  /** Subscriptions by selector hash: who gets a receiver's live events. */
  private readonly bySelector = new Map<string, Set<Sub>>();
  private started: Promise<void> | undefined;
  private stopped = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** Serializes create and delete (receivers follow the set of selectors in use). */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(o: SubscriptionManagerOptions) {
    this.store = o.store;
    this.subStore = createSubscriptionStore(o.sql);
    this.replayStore = createReplayStore(o.sql);
    this.chunk = o.chunkSize ?? 1000;
    this.liveBufferMax = o.liveBufferMax ?? 5000;
    this.log = (o.logger ?? pino({ level: 'silent' })).child({ part: 'subscriptions' });
    this.dispatched = o.dispatched;
    this.holding = o.holding;
    this.logHead = o.logHead;
    this.flushMs = o.flushMs ?? 200;
    this.maxSubscriptions = o.maxSubscriptions ?? CAPS.subscriptions.default;
    this.metrics = o.metrics;
    this.receiverMaxLength = o.receiverMaxLength ?? 10_000;
    this.receivers = createReceivers({
      amqpUrl: o.amqpUrl,
      maxLength: this.receiverMaxLength,
      queueType: o.receiverQueueType ?? 'classic',
      logger: this.log,
      onLive: (hash, events) => this.onLive(hash, events),
      onReset: () => {
        for (const sub of this.subs.values()) sub.active?.reset();
      },
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private ready(): void {
    if (this.stopped) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'the subscription manager is stopped');
    if (!this.started) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'the subscription manager is not started');
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  start(): Promise<void> {
    this.started ??= (async () => {
      const { subscriptions, receivers } = await this.subStore.loadAll();
      for (const rec of subscriptions) this.addSub(rec);
      const replays = await this.loadReplays();
      const inUse = new Map<string, Selector>();
      for (const sub of this.subs.values()) inUse.set(sub.selector.hash, sub.selector);
      const known = new Set(receivers.map((r) => r.hash));
      for (const [hash, selector] of inUse) if (!known.has(hash)) await this.subStore.ensureReceiver(selector);
      await this.receivers.start([...inUse.values()]);
      for (const r of receivers) {
        if (inUse.has(r.hash)) continue;
        // Left by a crash between deleting the last subscription and its queue.
        await this.receivers
          .remove(r.selector)
          .catch((err) => this.log.warn({ err: errText(err), queue: r.queue }, 'could not delete an unused receiver'));
        await this.subStore.deleteReceiver(r.hash);
      }
      this.flushTimer = setInterval(() => void this.flush().catch(() => undefined), this.flushMs);
      this.flushTimer.unref();
      this.log.info({ subscriptions: this.subs.size, receivers: inUse.size, replays }, 'subscriptions started');
    })();
    this.started.catch(() => {
      this.started = undefined;
    });
    return this.started;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.flushTimer) clearInterval(this.flushTimer);
    for (const sub of this.subs.values()) sub.endConsumers('hub stopping');
    await this.chain;
    await this.flush().catch((err) => this.log.error({ err: errText(err) }, 'could not save acknowledged offsets at stop'));
    await this.receivers.stop();
    this.log.info('subscriptions stopped');
  }

  /**
   * Unfinished replays into subscriptions go back into their subscriptions' jobs and continue after
   * their saved position; one whose subscription is gone (deleted while its row was being written)
   * is marked failed. Returns how many continue.
   */
  private async loadReplays(): Promise<number> {
    let n = 0;
    for (const r of await this.replayStore.listUnfinished('subscription')) {
      const name = r.target === 'flow' ? '' : r.target.subscription;
      const sub = this.subs.get(name);
      if (!sub) {
        await this.replayStore.finish(r.id, 'failed', Date.now(), `subscription ${name} was deleted`);
        continue;
      }
      sub.replays.push({
        id: r.id,
        matches: compileMatcher(r.selector),
        position: r.position,
        upTo: r.upTo,
        count: r.count,
        capped: false,
        since: r.since,
        until: r.until,
      });
      n++;
    }
    return n;
  }

  private addSub(rec: SubscriptionRecord): Sub {
    const sub = new Sub(rec.name, rec.selector, rec.createdAt, rec.ackedOffset);
    this.subs.set(rec.name, sub);
    const set = this.bySelector.get(rec.selector.hash);
    if (set) set.add(sub);
    else this.bySelector.set(rec.selector.hash, new Set([sub]));
    return sub;
  }

  // ---- live ------------------------------------------------------------------------------------

  /**
   * Live events from a receiver queue. The queue is fed by `herald.events`, where only the hub
   * should publish (docs/hub.md, RabbitMQ permissions); all the same, an offset is never taken on
   * trust: an event above the log's head (as ingest knows it, or else as the store answers) is
   * left out, so a forged or stray message never moves a subscription past an offset it has not
   * got. Deliveries stay in arrival order while the head is read.
   */
  private onLive(hash: string, events: StoredEvent[]): void {
    let top = 0n;
    for (const e of events) if (e.offset > top) top = e.offset;
    const trusted = this.headAtLeast();
    if (this.headCheck === undefined && top <= trusted) {
      this.deliverLive(hash, events);
      return;
    }
    const run = (this.headCheck ?? Promise.resolve()).then(async () => {
      if (top > this.headAtLeast()) {
        try {
          const head = await this.store.headOffset();
          if (head > this.knownHead) this.knownHead = head;
        } catch (err) {
          this.log.debug({ err: String(err) }, 'could not read the log head for live events (those above it wait for catch-up)');
        }
      }
      const head = this.headAtLeast();
      const within = events.filter((e) => e.offset <= head);
      if (within.length < events.length) this.leftOut(events.length - within.length, head);
      if (within.length > 0) this.deliverLive(hash, within);
    });
    const settled = run.catch(() => undefined);
    this.headCheck = settled;
    void settled.then(() => {
      if (this.headCheck === settled) this.headCheck = undefined;
    });
  }

  /** The highest offset known to be in the log. */
  private headAtLeast(): bigint {
    const h = this.logHead?.();
    return h !== undefined && h > this.knownHead ? h : this.knownHead;
  }

  /** Warns at most every 10 s, with how many were left out meanwhile. */
  private leftOut(n: number, head: bigint): void {
    this.forged.count += n;
    const now = Date.now();
    if (now - this.forged.warnedAt < 10_000) return;
    this.log.warn(
      { leftOut: this.forged.count, head: head.toString() },
      'live messages with an offset beyond the log head left out: something other than the hub publishes to herald.events (see the RabbitMQ permissions in docs/hub.md)',
    );
    this.forged = { count: 0, warnedAt: now };
  }

  private deliverLive(hash: string, events: StoredEvent[]): void {
    const set = this.bySelector.get(hash);
    if (!set) return;
    for (const sub of set) {
      sub.active?.onLive(events);
      if (sub.waiters.size > 0) sub.wakeWaiters();
    }
  }

  async readLog(sub: Sub, after: bigint, limit: number): Promise<StoredEvent[]> {
    // The horizon: what the dispatcher has forwarded or held, and below the first held event.
    let horizon = this.dispatched?.();
    if (this.holding === undefined || this.holding()) {
      const held = await this.subStore.firstHeld(sub.selector);
      if (held !== undefined) horizon = min(horizon, held - 1n);
    }
    if (horizon !== undefined && horizon <= after) return [];
    // Bounded in bytes too: a chunk of 1,000 events of 1 MiB would be a gigabyte per consumer.
    return this.store.query({ selector: sub.selector, after, upTo: horizon, limit, maxBytes: READ_MAX_BYTES });
  }

  // ---- acks ------------------------------------------------------------------------------------

  acked(sub: Sub, offset: bigint): void {
    if (offset > sub.acked) sub.acked = offset;
  }

  /** Saves every acknowledged offset not yet saved, in one UPDATE; one flush at a time. */
  private flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    const dirty: { sub: Sub; acked: bigint }[] = [];
    for (const sub of this.subs.values()) if (sub.acked > sub.saved) dirty.push({ sub, acked: sub.acked });
    if (dirty.length === 0) return Promise.resolve();
    this.flushing = this.subStore
      .saveAcked(dirty.map((d) => ({ name: d.sub.name, acked: d.acked })))
      .then(
        () => {
          for (const d of dirty) if (d.acked > d.sub.saved) d.sub.saved = d.acked;
        },
        (err) => {
          this.log.warn({ err: errText(err), subscriptions: dirty.length }, 'could not save acknowledged offsets; will retry');
          throw err;
        },
      )
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  warn(err: unknown, c: AttachedConsumer): void {
    this.log.warn({ err: errText(err), subscription: c.sub.name, consumer: c.label }, 'reading the log failed; retrying');
  }

  async detach(c: AttachedConsumer): Promise<void> {
    const sub = c.sub;
    const i = sub.standby.indexOf(c);
    if (i >= 0) sub.standby.splice(i, 1);
    if (sub.active === c) {
      sub.active = undefined;
      const nextOne = sub.standby.shift();
      if (nextOne) {
        sub.active = nextOne;
        nextOne.activate();
        this.log.info({ subscription: sub.name, consumer: nextOne.label }, 'standby consumer took over');
      }
      await this.flush().catch(() => undefined);
    }
  }

  // ---- create, list, delete --------------------------------------------------------------------

  private async startOffset(selector: Selector, start: StartPosition): Promise<bigint> {
    if (start === 'earliest') return 0n;
    if (start === 'new') return this.store.headOffset();
    if ('offset' in start) return start.offset > 0n ? start.offset - 1n : 0n;
    if ('last' in start) {
      const nth = await this.subStore.nthLast(selector, start.last);
      return nth === undefined ? 0n : nth - 1n;
    }
    const head = await this.store.headOffset();
    const first = await this.store.query({ selector, since: start.time, upTo: head, limit: 1 });
    return first[0] ? first[0].offset - 1n : head;
  }

  async create(input: SubscriptionInput): Promise<SubscriptionView> {
    const sub = await this.ensure(input.name, input.selector, input.start);
    return this.view(sub);
  }

  /** Finds or creates; CONFLICT when it exists with another selector. */
  private async ensure(name: unknown, selectorInput: SubscriptionInput['selector'] | undefined, startInput: unknown): Promise<Sub> {
    this.ready();
    assertSubscriptionName(name);
    const existing = this.subs.get(name);
    if (existing && selectorInput === undefined) return existing;
    if (selectorInput === undefined)
      throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${name}: give a selector to create it`, { details: { name } });
    const selector = parseSelector(selectorInput);
    const start = normalizeStart(startInput);
    return this.serial(async () => {
      this.ready();
      const have = this.subs.get(name);
      if (have) {
        if (have.selector.canonical !== selector.canonical)
          throw new HeraldError(
            ErrorCodes.CONFLICT,
            `subscription ${name} exists with selector ${have.selector.canonical}, not ${selector.canonical}`,
            { details: { name, selector: have.selector.canonical } },
          );
        return have;
      }
      if (this.subs.size >= this.maxSubscriptions) throw capReached('subscriptions', this.maxSubscriptions);
      const acked = await this.startOffset(selector, start);
      const rec = await this.subStore.insert({ name, selector, ackedOffset: acked, createdAt: Date.now() });
      if (rec.selector.canonical !== selector.canonical)
        throw new HeraldError(ErrorCodes.CONFLICT, `subscription ${name} exists with selector ${rec.selector.canonical}`, {
          details: { name, selector: rec.selector.canonical },
        });
      const firstOfSelector = !this.bySelector.get(selector.hash)?.size;
      const sub = this.addSub(rec);
      if (firstOfSelector) {
        await this.receivers
          .add(selector)
          .catch((err) =>
            this.log.error(
              { err: errText(err), queue: receiverQueue(selector) },
              'could not declare the receiver queue (the log still serves)',
            ),
          );
      }
      this.log.info({ subscription: name, selector: selector.canonical, acked: acked.toString() }, 'subscription created');
      return sub;
    });
  }

  async list(): Promise<SubscriptionView[]> {
    this.ready();
    const head = await this.store.headOffset();
    const subs = [...this.subs.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return Promise.all(subs.map((s) => this.view(s, head)));
  }

  selectorOf(name: string): Selector | undefined {
    this.ready();
    return this.subs.get(name)?.selector;
  }

  async receiverDepths(): Promise<{ queue: string; messages: number; limit: number }[]> {
    return (await this.receivers.depths()).map((d) => ({ ...d, limit: this.receiverMaxLength }));
  }

  standbysOf(name: string): number {
    return this.subs.get(name)?.standby.length ?? 0;
  }

  async get(name: string): Promise<SubscriptionView | undefined> {
    this.ready();
    const sub = this.subs.get(name);
    return sub ? this.view(sub) : undefined;
  }

  private async view(sub: Sub, head?: bigint): Promise<SubscriptionView> {
    const headOffset = head ?? (await this.store.headOffset());
    const lag = await this.subStore.lag(sub.selector, sub.acked);
    const now = Date.now();
    const httpActive = sub.httpUntil > now;
    return {
      name: sub.name,
      selector: sub.selector,
      state: sub.active || httpActive ? 'active' : 'sleeping',
      ackedOffset: sub.acked,
      headOffset,
      lagEvents: lag.events,
      lagSeconds: lag.oldestMs === undefined ? 0 : Math.max(0, (now - lag.oldestMs) / 1000),
      consumer: sub.active ? sub.active.label : httpActive ? 'http' : undefined,
      queue: receiverQueue(sub.selector),
      createdAt: sub.createdAt,
    };
  }

  delete(name: string): Promise<boolean> {
    this.ready();
    return this.serial(async () => {
      const sub = this.subs.get(name);
      if (!sub) return false;
      sub.endConsumers('subscription deleted');
      const deleted = await this.subStore.delete(name, sub.selector);
      this.subs.delete(name);
      this.metrics?.forgetSubscription(name);
      const jobs = sub.replays.splice(0);
      for (const job of jobs)
        await this.replayStore
          .finish(job.id, 'failed', Date.now(), `subscription ${name} was deleted`)
          .catch((err) =>
            this.log.warn({ err: errText(err), replay: job.id }, 'could not mark a replay into a deleted subscription failed'),
          );
      const set = this.bySelector.get(sub.selector.hash);
      set?.delete(sub);
      if (!set || set.size === 0) {
        this.bySelector.delete(sub.selector.hash);
        await this.receivers
          .remove(sub.selector)
          .catch((err) => this.log.warn({ err: errText(err), queue: receiverQueue(sub.selector) }, 'could not delete the receiver queue'));
      }
      this.log.info({ subscription: name }, 'subscription deleted');
      return deleted;
    });
  }

  // ---- consumers -------------------------------------------------------------------------------

  async attach(req: AttachRequest): Promise<Consumer> {
    const maxInFlight = req.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > MAX_IN_FLIGHT)
      throw new ValidationError(
        ErrorCodes.INVALID_REQUEST,
        `invalid maxInFlight ${maxInFlight}: expected an integer from 1 to ${MAX_IN_FLIGHT}`,
        {
          details: { parameter: 'maxInFlight' },
        },
      );
    const sub = await this.ensure(req.name, req.selector, req.start);
    this.ready();
    if (this.subs.get(sub.name) !== sub) throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${sub.name}`);
    const c = new AttachedConsumer(this, sub, req.consumer, maxInFlight, req.resumeAfter);
    if (sub.active) sub.standby.push(c);
    else {
      sub.active = c;
      c.activate();
    }
    sub.httpUntil = 0;
    sub.wakeWaiters();
    this.log.info({ subscription: sub.name, consumer: req.consumer, standby: sub.active !== c }, 'consumer attached');
    return c;
  }

  private need(name: string): Sub {
    this.ready();
    const sub = this.subs.get(name);
    if (!sub) throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${name}`, { details: { name } });
    return sub;
  }

  private conflictIfAttached(sub: Sub): void {
    if (sub.active)
      throw new HeraldError(ErrorCodes.CONFLICT, `subscription ${sub.name} has an active consumer (${sub.active.label})`, {
        details: { name: sub.name, consumer: sub.active.label },
      });
  }

  async pull(name: string, opts: { max: number; waitMs: number; signal?: AbortSignal }): Promise<DeliveredEvent[]> {
    const sub = this.need(name);
    this.conflictIfAttached(sub);
    const max = Math.max(1, Math.min(Math.trunc(opts.max) || 1, 10_000));
    const deadline = Date.now() + Math.max(0, opts.waitMs);
    const run = sub.pulling.then(async () => {
      for (;;) {
        this.conflictIfAttached(sub);
        if (this.subs.get(name) !== sub) throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${name}`);
        sub.httpUntil = Date.now() + HTTP_ACTIVE_MS;
        if (sub.replays.length > 0) {
          const replayed = await this.readReplay(sub, max, sub.acked);
          if (replayed.length > 0) return replayed;
        }
        const rows = await this.readLog(sub, sub.acked, max);
        if (rows.length > 0) return rows as DeliveredEvent[];
        const left = deadline - Date.now();
        if (left <= 0 || opts.signal?.aborted || this.stopped) return [];
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            sub.waiters.delete(done);
            opts.signal?.removeEventListener('abort', done);
            resolve();
          };
          // Woken by a live event of the selector; the log is looked at again at least every second.
          const timer = setTimeout(done, Math.min(left, 1000));
          sub.waiters.add(done);
          opts.signal?.addEventListener('abort', done, { once: true });
        });
      }
    });
    sub.pulling = run.catch(() => undefined);
    const events = await run;
    if (events.length > 0) this.metrics?.deliveredTo(name, events.length);
    return events;
  }

  async ack(name: string, offset: bigint): Promise<void> {
    const sub = this.need(name);
    if (typeof offset !== 'bigint' || offset < 0n)
      throw new ValidationError(ErrorCodes.INVALID_REQUEST, `invalid ack offset ${String(offset)}`, { details: { parameter: 'offset' } });
    if (offset > sub.acked) {
      const head = await this.store.headOffset();
      if (offset > head)
        throw new ValidationError(ErrorCodes.INVALID_REQUEST, `ack ${offset} is above the head of the log (${head})`, {
          details: { parameter: 'offset', offset: offset.toString(), head: head.toString() },
        });
    }
    // An ack is the subscription's, whichever transport delivered: one above what the attached
    // consumer delivered (an HTTP pull got those before it attached) moves that consumer past them.
    if (sub.active) {
      if (offset > sub.active.position) sub.active.skipTo(offset);
      else sub.active.ack(offset);
      return;
    }
    sub.httpUntil = Date.now() + HTTP_ACTIVE_MS;
    this.acked(sub, offset);
  }

  // ---- replays ---------------------------------------------------------------------------------

  async replay(name: string, range: SubscriptionReplay): Promise<number> {
    const sub = this.need(name);
    // Only what this subscription was already given (or acknowledged) is re-sent: later events come anyway.
    const reach = sub.active && sub.active.position > sub.acked ? sub.active.position : sub.acked;
    const upTo = range.upTo < reach ? range.upTo : reach;
    const count =
      upTo > range.after
        ? await this.subStore.countRange(sub.selector, range.selector, { after: range.after, upTo, since: range.since, until: range.until })
        : 0;
    const now = Date.now();
    await this.replayStore.insertForSubscription({
      id: range.id,
      selector: range.selector,
      from: range.from ?? { offset: range.after + 1n },
      to: range.to ?? (range.from === undefined ? { offset: range.upTo } : undefined),
      target: { subscription: name },
      status: count > 0 ? 'pending' : 'done',
      count: 0,
      after: range.after,
      upTo,
      since: range.since,
      until: range.until,
      position: range.after,
      createdAt: now,
      finishedAt: count > 0 ? undefined : now,
      error: undefined,
    });
    if (this.subs.get(name) !== sub) {
      // Deleted while the row was written.
      await this.replayStore.finish(range.id, 'failed', Date.now(), `subscription ${name} was deleted`);
      throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${name}`, { details: { name } });
    }
    if (count > 0) {
      sub.replays.push({
        id: range.id,
        matches: compileMatcher(range.selector),
        position: range.after,
        upTo,
        count: 0,
        capped: false,
        since: range.since,
        until: range.until,
      });
      sub.active?.reset();
      sub.wakeWaiters();
    }
    this.log.info({ subscription: name, replay: range.id, count }, 'replay into subscription');
    return count;
  }

  activeReplays(): number {
    let n = 0;
    for (const sub of this.subs.values()) n += sub.replays.length;
    return n;
  }

  cancelReplay(name: string, id: string): Promise<boolean> {
    const sub = this.subs.get(name);
    if (!sub) return Promise.resolve(false);
    // After the replay read in progress (serialized like readReplay): no later read returns its events.
    const run = sub.replaying.then(async () => {
      const job = sub.replays.find((j) => j.id === id);
      if (!job) return false;
      await this.replayStore.finish(id, 'cancelled', Date.now());
      const i = sub.replays.indexOf(job);
      if (i >= 0) sub.replays.splice(i, 1);
      this.log.info({ subscription: name, replay: id, count: job.count }, 'replay into subscription cancelled');
      return true;
    });
    sub.replaying = run.catch(() => undefined);
    return run;
  }

  /**
   * The next events of the first replay job, marked; never above `position` (what was delivered).
   * Each chunk's new position and count are saved before it is handed out (one UPDATE per chunk),
   * so a restarted manager continues after it; when the save fails this rejects and nothing moved.
   */
  readReplay(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]> {
    const run = sub.replaying.then(() => this.readReplayNow(sub, room, position));
    sub.replaying = run.catch(() => undefined);
    return run;
  }

  private async readReplayNow(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]> {
    while (sub.replays.length > 0) {
      const job = sub.replays[0] as ReplayJob;
      const upTo = !job.capped && position < job.upTo ? position : job.upTo;
      const rows =
        job.position >= upTo
          ? []
          : await this.store.query({
              selector: sub.selector,
              after: job.position,
              upTo,
              since: job.since,
              until: job.until,
              limit: this.chunk,
              maxBytes: READ_MAX_BYTES,
            });
      const out: DeliveredEvent[] = [];
      let last = job.position;
      for (const e of rows) {
        last = e.offset;
        if (job.matches(e.sender, e.type)) out.push({ ...e, replay: job.id });
        if (out.length >= room) break;
      }
      const finished =
        !queryMayHaveMore({ limit: this.chunk, maxBytes: READ_MAX_BYTES }, rows) &&
        (rows.length === 0 || last === (rows[rows.length - 1] as StoredEvent).offset);
      const count = job.count + out.length;
      // Deleted meanwhile (its row is failed already), or another reader finished the job.
      if (this.subs.get(sub.name) !== sub || sub.replays[0] !== job) return [];
      if (last !== job.position || upTo !== job.upTo || finished)
        await this.replayStore.progress(job.id, last, count, upTo !== job.upTo ? upTo : undefined);
      if (finished) await this.replayStore.finish(job.id, 'done', Date.now());
      job.capped = true;
      job.upTo = upTo;
      job.position = last;
      job.count = count;
      if (finished) {
        sub.replays.shift();
        this.log.info({ subscription: sub.name, replay: job.id, count }, 'replay into subscription done');
      }
      if (out.length > 0) return out;
    }
    return [];
  }
}
