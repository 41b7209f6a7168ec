import { ErrorCodes, HeraldError, parseSelector, type Selector, ValidationError } from '@herald/core';
import { type Logger, pino } from 'pino';
import { CAPS, capReached } from '../caps/index.ts';
import { ReplaysIntoSubscriptions } from '../replays/into-subscription.ts';
import type { SqlExecutor } from '../store/driver.ts';
import type { Lag, SubscriptionRecord, SubscriptionStore } from '../store/index.ts';
import { createReplayStore, createSubscriptionStore, receiverQueue } from '../store/index.ts';
import { READ_MAX_BYTES, type Store, type StoredEvent } from '../store/types.ts';
import { AckFlusher } from './acks.ts';
import { AttachedConsumer, type ConsumerCore, LIVE_BUFFERS_MAX_BYTES, Sub } from './consumer.ts';
import { ack, type PullCore, pull } from './http-pull.ts';
import { deleteReceiverQueues } from './legacy-receivers.ts';
import { MemoryReceivers } from './memory-receivers.ts';
import { assertSubscriptionName, normalizeStart } from './start-position.ts';
import type {
  AttachRequest,
  Consumer,
  DeliveredEvent,
  StartPosition,
  SubscriptionInput,
  SubscriptionManager,
  SubscriptionMetrics,
  SubscriptionReplay,
  SubscriptionView,
} from './types.ts';
import { lagsAt, subscriptionView } from './views.ts';

export type { SubscriptionMetrics } from './types.ts';

/** What the manager needs. */
export interface SubscriptionManagerOptions {
  /** The log: catch-up reads, replays, the head. */
  store: Pick<Store, 'query' | 'headOffset'>;
  /**
   * Runs the SQL of the subscriptions and receivers tables (migration 003), reads held_events and
   * keeps the replays into subscriptions in the replays table (002).
   */
  sql: SqlExecutor;
  /**
   * RabbitMQ, where earlier versions kept a receiver queue per selector: those left are deleted at
   * start, in the background. Default: none deleted.
   */
  amqpUrl?: string | undefined;
  logger?: Logger | undefined;
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
  /** Events read from the log per catch-up step (bounded memory per consumer). Default 1000. */
  chunkSize?: number | undefined;
  /** Subscriptions this manager keeps (HERALD_MAX_SUBSCRIPTIONS); creating one more is LIMIT_EXCEEDED. Default 10,000. */
  maxSubscriptions?: number | undefined;
  /** Counts deliveries per subscription (metrics/metrics.ts). Default: nothing counted. */
  metrics?: SubscriptionMetrics | undefined;
  /** How often acknowledged offsets are saved, in one UPDATE. Default 200 ms. */
  flushMs?: number | undefined;
  /**
   * Live events buffered per consumer while it catches up or is slow (HERALD_RECEIVER_MAX_LENGTH);
   * beyond, the buffer is dropped and the consumer reads the log instead. Default 10,000.
   */
  liveBufferMax?: number | undefined;
}

const DEFAULT_MAX_IN_FLIGHT = 100;
const MAX_IN_FLIGHT = 10_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const min = (a: bigint | undefined, b: bigint | undefined) => (a === undefined ? b : b === undefined ? a : a < b ? a : b);

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
 * Live events come from the dispatcher (feed(), what it forwards, in memory) to the in-memory
 * receiver of each selector that has a consumer or a waiting pull: a subscription is a cursor over
 * the log and costs RabbitMQ nothing. A live event is only a hint: a consumer takes it when it
 * follows on from what it has, and reads the log otherwise, so nothing is lost or repeated.
 *
 * The parts: consumer.ts (a consumer's catch-up/live state machine), memory-receivers.ts (live
 * events to the selectors awake), acks.ts (acknowledged offsets saved in batches), http-pull.ts
 * (HTTP pulls and acks), ../replays/into-subscription.ts (replays into a subscription). This file
 * keeps the registry: which subscriptions exist, their receivers, and who is attached.
 */
export function createSubscriptionManager(options: SubscriptionManagerOptions): SubscriptionManager {
  return new Manager(options);
}

class Manager implements SubscriptionManager, ConsumerCore, PullCore {
  readonly store: Pick<Store, 'query' | 'headOffset'>;
  readonly subStore: SubscriptionStore;
  readonly chunk: number;
  readonly liveBufferMax: number;
  readonly liveBytes = { used: 0, max: LIVE_BUFFERS_MAX_BYTES };
  readonly metrics: SubscriptionMetrics | undefined;
  private readonly log: Logger;
  private readonly receivers: MemoryReceivers;
  /** Where earlier versions' receiver queues are deleted from; undefined: left alone. */
  private readonly amqpUrl: string | undefined;
  private readonly acks: AckFlusher;
  private readonly replays: ReplaysIntoSubscriptions;
  private readonly dispatched: (() => bigint | undefined) | undefined;
  private readonly holding: (() => boolean) | undefined;
  private readonly maxSubscriptions: number;
  private readonly subs = new Map<string, Sub>();
  /** Subscriptions by selector hash: who gets a receiver's live events. */
  private readonly bySelector = new Map<string, Set<Sub>>();
  private started: Promise<void> | undefined;
  private isStopped = false;
  /** Serializes create and delete (receivers follow the set of selectors in use). */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(o: SubscriptionManagerOptions) {
    this.store = o.store;
    this.subStore = createSubscriptionStore(o.sql);
    this.chunk = o.chunkSize ?? 1000;
    this.liveBufferMax = o.liveBufferMax ?? 10_000;
    this.amqpUrl = o.amqpUrl;
    this.log = (o.logger ?? pino({ level: 'silent' })).child({ part: 'subscriptions' });
    this.dispatched = o.dispatched;
    this.holding = o.holding;
    this.maxSubscriptions = o.maxSubscriptions ?? CAPS.subscriptions.default;
    this.metrics = o.metrics;
    this.acks = new AckFlusher(this.subStore, () => this.subs.values(), this.log, o.flushMs ?? 200);
    this.replays = new ReplaysIntoSubscriptions({
      store: o.store,
      subStore: this.subStore,
      replayStore: createReplayStore(o.sql),
      chunk: this.chunk,
      log: this.log,
      current: (name) => this.subs.get(name),
    });
    this.receivers = new MemoryReceivers((hash, events) => this.deliverLive(hash, events));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private ready(): void {
    if (this.isStopped) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'the subscription manager is stopped');
    if (!this.started) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'the subscription manager is not started');
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  start(): Promise<void> {
    this.started ??= (async () => {
      const { subscriptions, receivers } = await this.subStore.loadAll();
      for (const rec of subscriptions) this.addSub(rec);
      const replays = await this.replays.load();
      for (const sub of this.subs.values()) this.receivers.add(sub.selector);
      // Earlier versions copied every event into a RabbitMQ queue per selector: those go.
      if (this.amqpUrl !== undefined && receivers.length > 0) {
        // In the background; the rows go with their queues, so the next start has nothing to do.
        void deleteReceiverQueues(
          this.amqpUrl,
          receivers.map((r) => r.queue),
          this.log,
        ).then(async (gone) => {
          const done = new Set(gone);
          for (const r of receivers) if (done.has(r.queue)) await this.subStore.deleteReceiver(r.hash).catch(() => undefined);
        });
      }
      this.acks.start();
      this.log.info({ subscriptions: this.subs.size, receivers: this.receivers.size, replays }, 'subscriptions started');
    })();
    this.started.catch(() => {
      this.started = undefined;
    });
    return this.started;
  }

  async stop(): Promise<void> {
    if (this.isStopped) return;
    this.isStopped = true;
    this.acks.stop();
    for (const sub of this.subs.values()) sub.endConsumers('hub stopping');
    await this.chain;
    await this.acks.flush().catch((err) => this.log.error({ err: errText(err) }, 'could not save acknowledged offsets at stop'));
    this.log.info('subscriptions stopped');
  }

  stopped(): boolean {
    return this.isStopped;
  }

  current(name: string): Sub | undefined {
    return this.subs.get(name);
  }

  private addSub(rec: SubscriptionRecord): Sub {
    const sub = new Sub(rec.name, rec.selector, rec.createdAt, rec.ackedOffset, (s, awake) =>
      this.receivers.setAwake(s.selector.hash, awake),
    );
    this.subs.set(rec.name, sub);
    const set = this.bySelector.get(rec.selector.hash);
    if (set) set.add(sub);
    else this.bySelector.set(rec.selector.hash, new Set([sub]));
    return sub;
  }

  // ---- reading -------------------------------------------------------------------------------

  /**
   * What the dispatcher forwards live (and releases after a pause), in offset order: handed to the
   * consumers of every subscription it matches. Never a replay into the flow (its events are
   * history the subscriptions read from the log).
   */
  feed(events: readonly StoredEvent[]): void {
    if (this.isStopped || !this.started) return;
    this.receivers.feed(events);
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

  readReplay(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]> {
    return this.replays.read(sub, room, position);
  }

  acked(sub: Sub, offset: bigint): void {
    this.acks.acked(sub, offset);
  }

  // ---- consumers -------------------------------------------------------------------------------

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
      await this.acks.flush().catch(() => undefined);
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
      const sub = this.addSub(rec);
      this.receivers.add(selector);
      this.log.info({ subscription: name, selector: selector.canonical, acked: acked.toString() }, 'subscription created');
      return sub;
    });
  }

  async list(): Promise<SubscriptionView[]> {
    this.ready();
    const head = await this.store.headOffset();
    const subs = [...this.subs.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const lags = await lagsAt(this.subStore, subs, head);
    const now = Date.now();
    return subs.map((s, i) => subscriptionView(s, head, lags[i] as Lag, now));
  }

  selectorOf(name: string): Selector | undefined {
    this.ready();
    return this.subs.get(name)?.selector;
  }

  /** Each in-memory receiver, by the name its selector gives it, with its fullest consumer's live buffer. */
  async receiverDepths(): Promise<{ queue: string; messages: number; limit: number }[]> {
    const out: { queue: string; messages: number; limit: number }[] = [];
    for (const set of this.bySelector.values()) {
      let messages = 0;
      let selector: Selector | undefined;
      for (const sub of set) {
        selector = sub.selector;
        messages = Math.max(messages, sub.active?.buffered ?? 0);
      }
      if (selector) out.push({ queue: receiverQueue(selector), messages, limit: this.liveBufferMax });
    }
    return out;
  }

  standbysOf(name: string): number {
    return this.subs.get(name)?.standby.length ?? 0;
  }

  async get(name: string): Promise<SubscriptionView | undefined> {
    this.ready();
    const sub = this.subs.get(name);
    return sub ? this.view(sub) : undefined;
  }

  private async view(sub: Sub): Promise<SubscriptionView> {
    const head = await this.store.headOffset();
    return subscriptionView(sub, head, await this.subStore.lag(sub.selector, sub.acked, head));
  }

  delete(name: string): Promise<boolean> {
    this.ready();
    return this.serial(async () => {
      const sub = this.subs.get(name);
      if (!sub) return false;
      sub.endConsumers('subscription deleted');
      const deleted = await this.subStore.delete(name);
      this.subs.delete(name);
      this.metrics?.forgetSubscription(name);
      await this.replays.failAll(sub);
      const set = this.bySelector.get(sub.selector.hash);
      set?.delete(sub);
      if (!set || set.size === 0) {
        this.bySelector.delete(sub.selector.hash);
        this.receivers.remove(sub.selector.hash);
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

  async pull(name: string, opts: { max: number; waitMs: number; signal?: AbortSignal }): Promise<DeliveredEvent[]> {
    const events = await pull(this, this.need(name), opts);
    if (events.length > 0) this.metrics?.deliveredTo(name, events.length);
    return events;
  }

  ack(name: string, offset: bigint): Promise<void> {
    return ack(this, this.need(name), offset);
  }

  // ---- replays ---------------------------------------------------------------------------------

  replay(name: string, range: SubscriptionReplay): Promise<number> {
    return this.replays.start(this.need(name), range);
  }

  activeReplays(): number {
    let n = 0;
    for (const sub of this.subs.values()) n += sub.replays.length;
    return n;
  }

  cancelReplay(name: string, id: string): Promise<boolean> {
    const sub = this.subs.get(name);
    if (!sub) return Promise.resolve(false);
    return this.replays.cancel(sub, id);
  }
}
