import { setTimeout as sleep } from 'node:timers/promises';
import { EVENTS_EXCHANGE } from '@herald/core';
import type { Logger } from 'pino';
import { READ_MAX_BYTES, type Store, type StoredEvent } from '../store/types.ts';
import { Checkpoint, readCheckpoint } from './checkpoint.ts';
import type { Dispatcher } from './dispatcher.ts';
import { EventsChannel } from './events-channel.ts';

/** Runs handed over from memory that wait for the flow, at most; beyond, it reads the log instead. */
const FRESH_MAX_EVENTS = 50_000;
/** The same bound in body bytes. */
const FRESH_MAX_BYTES = 64 * 1024 * 1024;
/** How long a stopping flow waits for the confirms of what it sent. */
const STOP_GRACE_MS = 5000;
/** Events read from the log per step when catching up. */
const READ_LIMIT = 1000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Counters for metrics and the bench. */
export interface FlowStats {
  /** Live events published to `herald.events` and confirmed (not replays). */
  forwarded: number;
  /** The highest offset confirmed on `herald.events` (or held): the checkpoint; undefined when not forwarding. */
  dispatched: bigint | undefined;
  /** Reconnects of the `herald.events` channel. */
  reconnects: number;
}

/** What the flow reports as it goes. */
export interface FlowMetrics {
  /** Events published to herald.events and confirmed (not replays). */
  forwarded(events: readonly StoredEvent[]): void;
}

export interface FlowOptions {
  amqpUrl: string;
  /** Reads the log (catch-up), keeps the checkpoint. */
  store: Pick<Store, 'query' | 'headOffset' | 'getState' | 'setState'>;
  logger: Logger;
  /** Router mode: pauses and replays (its forward must be this flow's send()). Archive mode: none. */
  dispatcher?: Dispatcher | undefined;
  metrics?: FlowMetrics | undefined;
}

/**
 * Live events as they go out to `herald.events` (and releases after a pause), in dispatch order,
 * before RabbitMQ confirms them: they are in the log, so a hub that dies before the confirm loses
 * nothing (it forwards them again from the checkpoint). A forward that fails goes out again, and is
 * reported again: a listener skips what it has seen by offset.
 */
export type ForwardedListener = (events: readonly StoredEvent[]) => void;

interface Waiter {
  upTo: bigint;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * The one path from the log to `herald.events` (DESIGN.md §4): ingest hands it each run it stored,
 * in offset order (appended()); the flow publishes what the log holds above its checkpoint, from
 * memory in the normal case and from the log when it is behind (after a crash between store and
 * forward, a lost channel, or runs it had no room to keep), through the dispatcher's pauses and
 * replays in router mode, on a confirm channel of its own. It keeps the checkpoint (the highest
 * offset confirmed, or held, on `herald.events`) and the horizon (the highest dispatched, up to
 * which the durable subscriptions may read), and tells its listeners (the subscriptions' in-memory
 * receivers) what goes out live as it goes, so a subscriber does not wait for RabbitMQ's trip.
 *
 * Failure: a store or RabbitMQ failure is retried with backoff (50 ms doubling to 2 s), forever;
 * a lost channel means everything above the confirmed checkpoint goes again, from the log (at
 * least once, in order, never a gap). appended()'s promise settles only once its run is out, so
 * ingest acknowledges nothing that could be lost.
 */
export class LogFlow {
  private readonly channel: EventsChannel;
  private readonly checkpoint: Checkpoint;
  private readonly log: Logger;
  private readonly store: FlowOptions['store'];
  private readonly dispatcher: Dispatcher | undefined;
  private readonly metrics: FlowMetrics | undefined;
  private readonly listeners: ForwardedListener[] = [];
  /** The highest offset confirmed on herald.events (or held); undefined when not forwarding. */
  private confirmed: bigint | undefined;
  /** The highest offset handed to the channel (or held) on the current channel generation. */
  private sent: bigint | undefined;
  /**
   * The horizon: the highest offset the dispatcher has dispatched (handed to the channel, or its held
   * rows written), on any generation; it does not go back when a lost channel makes `sent` go back.
   */
  private dispatched: bigint | undefined;
  /** The highest offset the log is known to hold. */
  private head = 0n;
  private fresh: StoredEvent[][] = [];
  private freshEvents = 0;
  private freshBytes = 0;
  private waiters: Waiter[] = [];
  /** Settles once everything sent on this generation is confirmed, in order. */
  private tail: Promise<void> = Promise.resolve();
  private pumping: Promise<void> | undefined;
  private suspended = false;
  private stopped = false;
  private wakeStopped: (() => void) | undefined;
  private readonly stopSignal = new Promise<void>((r) => {
    this.wakeStopped = r;
  });
  private forwardedCount = 0;

  constructor(options: FlowOptions) {
    this.log = options.logger.child({ part: 'flow' });
    this.store = options.store;
    this.dispatcher = options.dispatcher;
    this.metrics = options.metrics;
    this.checkpoint = new Checkpoint(options.store, this.log);
    this.channel = new EventsChannel(options.amqpUrl, this.log, () => this.restartFromConfirmed());
  }

  /**
   * The `Forward` the dispatcher publishes with: live runs, releases and replays all go out on the
   * flow's one channel, so they reach RabbitMQ in the order the dispatcher sends them.
   */
  readonly send = (events: readonly StoredEvent[], options?: { replay?: string }): Promise<void> => {
    const confirmed = this.channel.publish(events, options?.replay);
    if (options?.replay === undefined && events.length > 0) {
      // Dispatched (its run's held rows are written before this): within the horizon before the
      // listeners hear of it, so a reader they wake finds it in the log.
      const last = (events[events.length - 1] as StoredEvent).offset;
      if (this.dispatched !== undefined && last > this.dispatched) this.dispatched = last;
      this.tellListeners(events);
      // Counted once confirmed. A failed release is the dispatcher's to retry: it does not hold up
      // the checkpoint (a failed live forward does, through step()'s own link on the same confirm).
      this.tail = this.tail.then(() =>
        confirmed.then(
          () => this.countForwarded(events),
          () => undefined,
        ),
      );
    }
    return confirmed;
  };

  onForwarded(listener: ForwardedListener): void {
    this.listeners.push(listener);
  }

  /**
   * Connects its channel, reads the checkpoint and the head of the log, and forwards what the log
   * holds above the checkpoint; resolves once that is confirmed (the events stored before a crash
   * go out before anything newer). Rejects when RabbitMQ or the store cannot be reached.
   */
  async start(): Promise<void> {
    await this.channel.start();
    this.confirmed = await readCheckpoint(this.store);
    this.sent = this.confirmed;
    this.dispatched = this.confirmed;
    this.head = (await this.store.headOffset()) ?? 0n;
    if (this.confirmed !== undefined && this.confirmed < this.head) {
      this.kick();
      await this.caughtUp(this.head);
    }
  }

  /** Finishes the step in progress, writes the checkpoint, closes the channel. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.wakeStopped?.();
    await this.pumping;
    // Confirms still on their way; a channel that died meanwhile does not hold the stop up.
    await Promise.race([this.tail.catch(() => undefined), sleep(STOP_GRACE_MS, undefined, { ref: false })]);
    if (this.confirmed !== undefined) await this.checkpoint.write(this.confirmed).catch(() => undefined);
    await this.channel.close();
    const closed = new Error('the flow to herald.events stopped');
    for (const w of this.waiters) w.reject(closed);
    this.waiters = [];
  }

  /**
   * The offset up to which the durable subscriptions may read the log: the highest dispatched
   * (handed to herald.events, or held by a pause with its held row written); undefined when not
   * forwarding. While suspended, what was dispatched before.
   */
  horizon(): bigint | undefined {
    return this.confirmed === undefined ? undefined : this.dispatched;
  }

  isConnected(): boolean {
    return this.channel.isConnected();
  }

  stats(): FlowStats {
    return { forwarded: this.forwardedCount, dispatched: this.confirmed, reconnects: this.channel.reconnects };
  }

  /**
   * A run ingest stored (ascending offsets, newer than any run before). Resolves once every event of
   * it is confirmed on herald.events or held by a pause (at once when not forwarding); rejects only
   * when the flow stops first.
   */
  appended(events: readonly StoredEvent[]): Promise<void> {
    const last = events[events.length - 1];
    if (last === undefined) return Promise.resolve();
    if (last.offset > this.head) this.head = last.offset;
    if (this.confirmed === undefined || this.suspended) return Promise.resolve();
    let bytes = 0;
    for (const e of events) bytes += e.data.length;
    if (this.freshEvents + events.length <= FRESH_MAX_EVENTS && this.freshBytes + bytes <= FRESH_MAX_BYTES) {
      this.fresh.push(events as StoredEvent[]);
      this.freshEvents += events.length;
      this.freshBytes += bytes;
    }
    const done = this.caughtUp(last.offset);
    this.kick();
    return done;
  }

  /**
   * Mode switches: finishes forwarding what the log holds, then forwards nothing (appended runs go
   * nowhere) until resume() or moveTo(). The checkpoint stays as it was, so a crash meanwhile
   * forwards again. Suspending a suspended flow does nothing.
   */
  async suspend(): Promise<void> {
    if (this.suspended) return;
    // The log may hold more than was handed over (a commit whose answer was lost): out before the drain.
    const head = await this.store.headOffset();
    if (head > this.head) {
      this.head = head;
      this.kick();
    }
    if (this.confirmed !== undefined) await this.caughtUp(this.head);
    await this.idle();
    this.suspended = true;
  }

  /**
   * Mode switches, after suspend(): forwarding resumes above everything appended meanwhile (the
   * events drained from the archive queue, which its binding delivered already); written at once.
   */
  resume(): Promise<void> {
    const c = this.confirmed;
    return this.moveTo(c !== undefined && c > this.head ? c : this.head);
  }

  /** Mode switches: forwarding resumes after `offset` (nothing at or below it goes out); written at once. */
  async moveTo(offset: bigint): Promise<void> {
    await this.idle();
    this.suspended = false;
    this.confirmed = offset;
    this.sent = offset;
    this.dispatched = offset;
    if (offset > this.head) this.head = offset;
    this.dropFresh();
    this.settleWaiters();
    await this.checkpoint.write(offset);
    this.kick();
  }

  /**
   * The log may hold events that were not handed over: a commit whose answer was lost, stored after
   * all and seen as duplicates on the retry. Reads the head of the log and forwards up to it.
   */
  recheckHead(): void {
    if (this.stopped) return;
    this.store.headOffset().then(
      (head) => {
        if (head <= this.head) return;
        this.head = head;
        if (this.confirmed !== undefined && !this.suspended) this.kick();
      },
      (err) => {
        // Nothing newer may come to raise the head: ask again until the store answers.
        this.log.warn({ err: errText(err) }, 'could not read the head of the log; trying again in 1 s');
        setTimeout(() => this.recheckHead(), 1000).unref();
      },
    );
  }

  /** Archive mode, once what router mode left is out: stops forwarding and clears the checkpoint. */
  async clear(): Promise<void> {
    if (this.confirmed !== undefined && !this.suspended) await this.caughtUp(this.head);
    await this.idle();
    this.confirmed = undefined;
    this.sent = undefined;
    this.dispatched = undefined;
    this.suspended = false;
    this.dropFresh();
    await this.checkpoint.write(null);
  }

  // ---- the pump -------------------------------------------------------------------------

  private async idle(): Promise<void> {
    while (this.pumping) await this.pumping;
    await this.tail.catch(() => undefined);
  }

  private kick(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (this.sent !== undefined && this.sent < this.head && !this.suspended && !this.stopped) this.kick();
    });
  }

  /** Sends everything above `sent` up to the head, one run at a time, retrying what fails. */
  private async pump(): Promise<void> {
    let delay = 50;
    let failing = false;
    while (!this.stopped && !this.suspended && this.sent !== undefined && this.sent < this.head) {
      if (!this.channel.isConnected()) {
        await Promise.race([this.channel.whenConnected(), this.stopSignal]);
        continue;
      }
      try {
        await this.step(this.sent);
        if (failing) this.log.info('forwarding recovered');
        failing = false;
        delay = 50;
      } catch (err) {
        if (!failing) this.log.error({ err: errText(err) }, `forwarding to ${EVENTS_EXCHANGE} failed; retrying`);
        failing = true;
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /** One run above `from`: from memory when it starts right after, else from the log. */
  private async step(from: bigint): Promise<void> {
    let events = this.takeFresh(from);
    if (events === undefined) {
      const head = this.head;
      events = await this.store.query({ after: from, upTo: head, limit: READ_LIMIT, maxBytes: READ_MAX_BYTES });
      if (events.length === 0) throw new Error(`the log has no events after offset ${from} up to ${head}`);
    }
    const gen = this.channel.gen();
    const { confirmed } = this.dispatcher ? await this.dispatcher.publish(events) : { confirmed: this.send(events) };
    if (gen !== this.channel.gen()) return; // lost meanwhile: restartFromConfirmed() sends it again
    const upTo = (events[events.length - 1] as StoredEvent).offset;
    this.sent = upTo;
    if (this.dispatched === undefined || upTo > this.dispatched) this.dispatched = upTo;
    // Confirms come in publish order on the one channel, so the tail settles in order too.
    this.tail = this.tail
      .then(() => confirmed)
      .then(() => {
        if (gen !== this.channel.gen() || this.confirmed === undefined || upTo <= this.confirmed) return;
        this.confirmed = upTo;
        this.settleWaiters();
        this.checkpoint.maybeWrite(upTo);
      });
    this.tail.catch((err) => {
      if (gen !== this.channel.gen()) return;
      this.log.warn({ err: errText(err) }, `a forward to ${EVENTS_EXCHANGE} was not confirmed; forwarding again from the checkpoint`);
      this.channel.reset('forward not confirmed');
    });
  }

  /** The first fresh run when it starts right after `from`; runs at or below `from` are dropped. */
  private takeFresh(from: bigint): StoredEvent[] | undefined {
    for (;;) {
      const run = this.fresh[0];
      if (run === undefined) return undefined;
      const first = (run[0] as StoredEvent).offset;
      const last = (run[run.length - 1] as StoredEvent).offset;
      if (last <= from) {
        this.shiftFresh();
        continue;
      }
      if (first !== from + 1n) {
        // Not contiguous (a run that found no room, or a restart): the log has what is between.
        if (first > from + 1n) return undefined;
        this.shiftFresh();
        return run.filter((e) => e.offset > from);
      }
      this.shiftFresh();
      return run;
    }
  }

  private shiftFresh(): void {
    const run = this.fresh.shift();
    if (run === undefined) return;
    this.freshEvents -= run.length;
    for (const e of run) this.freshBytes -= e.data.length;
  }

  private dropFresh(): void {
    this.fresh = [];
    this.freshEvents = 0;
    this.freshBytes = 0;
  }

  /** After a reconnect: everything above the confirmed checkpoint goes again, in order. */
  private restartFromConfirmed(): void {
    this.sent = this.confirmed;
    this.tail = Promise.resolve();
    this.kick();
  }

  private caughtUp(upTo: bigint): Promise<void> {
    if (this.confirmed === undefined || this.confirmed >= upTo) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ upTo, resolve, reject });
    });
  }

  private settleWaiters(): void {
    const c = this.confirmed;
    if (c === undefined) return;
    let n = 0;
    while (n < this.waiters.length && (this.waiters[n] as Waiter).upTo <= c) (this.waiters[n++] as Waiter).resolve();
    if (n > 0) this.waiters.splice(0, n);
  }

  private countForwarded(events: readonly StoredEvent[]): void {
    this.forwardedCount += events.length;
    this.metrics?.forwarded(events);
  }

  private tellListeners(events: readonly StoredEvent[]): void {
    for (const l of this.listeners) {
      try {
        l(events);
      } catch (err) {
        this.log.error({ err: errText(err) }, 'a listener of forwarded events failed');
      }
    }
  }
}
