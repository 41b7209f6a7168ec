import {
  createEvent,
  ErrorCodes,
  type EventInit,
  HeraldError,
  type HeraldEvent,
  INGEST_EXCHANGE,
  toAmqp,
  ValidationError,
  wireTopology,
} from '@herald/core';
import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { later, type ManagedConnection, openConnection } from './connection.ts';
import { OnWire } from './on-wire.ts';
import { type NormalizedPublisher, normalizePublisherOptions } from './options.ts';
import { applyTopology } from './topology.ts';
import { loadOpenTelemetry, openTelemetryLoaded, withActiveTraceContext } from './trace-context.ts';
import type { AnyEvents, EventMap, Publisher, PublisherOptions, PublishOptions, PublishReceipt } from './types.ts';
import { writeBatcher } from './write-batching.ts';

const MISSING_EXCHANGE = `exchange ${INGEST_EXCHANGE} does not exist: run \`herald topology\` or start the hub`;

/**
 * One publish on its way: built once, sent once per connection until confirmed. It keeps the event,
 * not its AMQP form: the properties are made again for each send, so per event in flight only this
 * record, the event and the caller's promise stay alive.
 */
class Pending {
  settled = false;
  /** Counted in `live`: false while it waits for room. */
  admitted = false;
  /** Removes the listener on the caller's AbortSignal once the publish settled. */
  unlisten: (() => void) | undefined = undefined;

  constructor(
    readonly event: HeraldEvent,
    /** Milliseconds after the publisher's `epoch` (0: none), so that it stays a small integer. */
    readonly deadline: number,
    readonly resolve: (receipt: PublishReceipt) => void,
    readonly reject: (err: unknown) => void,
  ) {}
}

/**
 * The publisher's state machine. Invariant that keeps order across reconnects: events leave
 * `queue` from its front only, so whatever is on the wire is older than whatever is still queued;
 * when a channel dies, its unconfirmed events (handed back in delivery-tag order) go back in front.
 */
class PublisherImpl implements Publisher {
  private readonly s: NormalizedPublisher;
  private readonly conn: ManagedConnection;
  private ch: ConfirmChannel | undefined;
  /** The events on `ch`'s wire, waiting for their confirms. */
  private wire: OnWire<Pending> | undefined;
  /** Holds the channel's socket writes until the end of the turn (write-batching.ts). */
  private batchWrites: (() => void) | undefined;
  /** Set between a server-side channel error and that channel's 'close': its publishes fail, not retry. */
  private channelError: HeraldError | undefined;
  /** Set while `herald.ingest` is known to be missing: publishes reject at once. */
  private fatal: HeraldError | undefined;
  private draining = false;
  private queue: (Pending | undefined)[] = [];
  private head = 0;
  private returned: Pending[] = [];
  /** Admitted and not settled; bounded by maxPending. */
  private live = 0;
  /** The admitted events in publish order, for the sweep; settled ones leave from the front. */
  private order: (Pending | undefined)[] = [];
  private orderHead = 0;
  /** Waiting for room (FIFO, so order holds). */
  private blocked: Pending[] = [];
  private blockedHead = 0;
  private flushWaiters: (() => void)[] = [];
  private closing: Promise<void> | undefined;
  private attachFailures = 0;
  private readonly sweeper: NodeJS.Timeout | undefined;
  /** The same for every publish: made once, not per event. */
  private readonly eventOptions: { maxBytes: number };
  private readonly amqpExtra: { userId?: string };
  /** Deadlines count from here. */
  private readonly epoch = Date.now();
  /** The confirm handlers, made once. */
  private readonly confirmed = (p: Pending) => this.settle(p, undefined);
  private readonly refused = (p: Pending) =>
    this.settle(
      p,
      new HeraldError(ErrorCodes.PUBLISH_FAILED, `RabbitMQ refused event ${p.event.id} (nack)`, { details: { id: p.event.id } }),
    );

  constructor(options: PublisherOptions) {
    this.s = normalizePublisherOptions(options);
    this.eventOptions = { maxBytes: this.s.maxEventBytes };
    this.amqpExtra = this.s.setUserId ? { userId: this.s.user } : {};
    void loadOpenTelemetry();
    if (this.s.confirmTimeoutMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(10, this.s.confirmTimeoutMs / 4)));
      this.sweeper.unref();
    }
    this.conn = openConnection(this.s, {
      onConnect: (model) => void this.attach(model),
      report: (err) => this.report(err),
    });
  }

  get pending(): number {
    return this.live;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  publish(type: string, data?: unknown, options?: PublishOptions): Promise<PublishReceipt> {
    if (this.closing) return Promise.reject(new HeraldError(ErrorCodes.CLOSED, 'publisher is closed'));
    // The first publishes wait, in order, for the one load of @opentelemetry/api (its context survives the wait).
    if (!openTelemetryLoaded()) return loadOpenTelemetry().then(() => this.send(type, data, options));
    return this.send(type, data, options);
  }

  private send(type: string, data?: unknown, options?: PublishOptions): Promise<PublishReceipt> {
    if (this.fatal) return Promise.reject(this.fatal);
    const signal = options?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      return Promise.reject(new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid publish option signal: expected an AbortSignal'));
    if (signal?.aborted) return Promise.reject(aborted(signal, options?.id));
    let event: HeraldEvent;
    try {
      let init: EventInit = { sender: this.s.sender, type, data };
      if (options !== undefined) {
        const { signal: _signal, ...fields } = options;
        init = { ...fields, sender: this.s.sender, type, data };
      }
      event = createEvent(withActiveTraceContext(init), this.eventOptions);
      if (this.s.check !== undefined) this.s.check(event);
    } catch (err) {
      return Promise.reject(err);
    }
    const deadline = this.s.confirmTimeoutMs > 0 ? Date.now() - this.epoch + this.s.confirmTimeoutMs : 0;
    return new Promise<PublishReceipt>((resolve, reject) => {
      const p = new Pending(event, deadline, resolve, reject);
      if (signal) {
        const onAbort = () => this.abort(p, signal);
        signal.addEventListener('abort', onAbort, { once: true });
        p.unlisten = () => signal.removeEventListener('abort', onAbort);
      }
      if (this.blockedHead === this.blocked.length && this.live < this.s.maxPending) this.admit(p);
      else this.blocked.push(p);
    });
  }

  flush(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      // Publishes waiting for the OpenTelemetry API were made before close(): they go first.
      await loadOpenTelemetry();
      await this.flush();
      if (this.sweeper) clearInterval(this.sweeper);
      const ch = this.ch;
      this.ch = undefined;
      await ch?.close().catch(() => undefined);
      await this.conn.close();
    })();
    return this.closing;
  }

  /**
   * The caller stopped waiting. Settling takes the event out of `live` and makes pump() and the
   * blocked queue skip it, so one not yet sent never is; one on the wire may still be confirmed,
   * and that confirm is ignored.
   */
  private abort(p: Pending, signal: AbortSignal): void {
    if (p.settled) return;
    if (p.admitted) this.settle(p, aborted(signal, p.event.id));
    else {
      // Still waiting for room: not in `live`, so settle() would miscount.
      p.settled = true;
      p.unlisten?.();
      p.reject(aborted(signal, p.event.id));
      if (this.flushWaiters.length > 0 && this.idle()) this.wakeFlushWaiters();
    }
  }

  private wakeFlushWaiters(): void {
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    for (const w of waiters) w();
  }

  private idle(): boolean {
    return this.live === 0 && this.blockedHead === this.blocked.length;
  }

  private admit(p: Pending): void {
    p.admitted = true;
    this.live++;
    this.order.push(p);
    this.queue.push(p);
    if (this.ch && !this.draining) this.pump();
  }

  private settle(p: Pending, err: HeraldError | undefined): void {
    if (p.settled) return;
    p.settled = true;
    p.unlisten?.();
    this.live--;
    this.trimOrder();
    if (err) p.reject(err);
    else p.resolve({ id: p.event.id });
    while (this.blockedHead < this.blocked.length && this.live < this.s.maxPending) {
      const next = this.blocked[this.blockedHead++] as Pending;
      if (!next.settled) this.admit(next);
    }
    if (this.blockedHead === this.blocked.length && this.blockedHead > 0) {
      this.blocked = [];
      this.blockedHead = 0;
    }
    if (this.flushWaiters.length > 0 && this.idle()) this.wakeFlushWaiters();
  }

  /** Drops settled events from the front of `order`; compacts it when settled ones pile up behind one that is not. */
  private trimOrder(): void {
    const order = this.order;
    while (this.orderHead < order.length && (order[this.orderHead] as Pending).settled) order[this.orderHead++] = undefined;
    if (this.orderHead === order.length) {
      order.length = 0;
      this.orderHead = 0;
    } else if (order.length > 2 * this.live + 1024) {
      this.order = order.filter((p) => p !== undefined && !p.settled);
      this.orderHead = 0;
    }
  }

  /** Sends queued events in order until the queue is empty or the socket asks us to wait. */
  private pump(): void {
    const ch = this.ch;
    const wire = this.wire;
    if (!ch || !wire || this.draining) return;
    if (this.returned.length > 0) this.absorbReturned();
    const q = this.queue;
    while (this.head < q.length) {
      const p = q[this.head] as Pending;
      q[this.head++] = undefined;
      if (p.settled) continue;
      const m = toAmqp(p.event, this.amqpExtra);
      let ok: boolean;
      try {
        ok = ch.publish(INGEST_EXCHANGE, m.routingKey, m.content, m.properties as Options.Publish);
        wire.push(p);
      } catch {
        // The channel is closing; its 'close' will bring us back here on a new one.
        q[--this.head] = p;
        return;
      }
      if (!ok) {
        this.draining = true;
        ch.once('drain', () => {
          if (this.ch !== ch) return;
          this.draining = false;
          this.pump();
        });
        break;
      }
    }
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    }
    this.batchWrites?.();
  }

  private absorbReturned(): void {
    const back = this.returned.filter((p) => !p.settled);
    this.returned = [];
    this.queue = (back as (Pending | undefined)[]).concat(this.queue.slice(this.head));
    this.head = 0;
  }

  private async attach(model: ChannelModel): Promise<void> {
    const stale = () => model !== this.conn.current || (this.closing !== undefined && this.idle());
    try {
      const probe = await model.createChannel();
      probe.on('error', () => undefined);
      if (this.s.declareTopology) {
        await applyTopology(probe, wireTopology('router'));
      } else {
        try {
          await probe.checkExchange(INGEST_EXCHANGE);
        } catch (cause) {
          if (stale() || (cause as { code?: number }).code !== 404) throw cause;
          throw new HeraldError(ErrorCodes.PUBLISH_FAILED, MISSING_EXCHANGE, { cause });
        }
      }
      await probe.close().catch(() => undefined);
      const ch = await model.createConfirmChannel();
      if (stale()) {
        await ch.close().catch(() => undefined);
        return;
      }
      ch.on('error', (err: Error & { code?: number }) => {
        // RabbitMQ closed the channel because of what was published (404 no exchange, 403 topic
        // permission, 406 user_id): retrying would fail the same way, so in-flight events fail.
        const reason = err.code === 404 ? MISSING_EXCHANGE : `RabbitMQ closed the publish channel: ${err.message}`;
        this.channelError = new HeraldError(ErrorCodes.PUBLISH_FAILED, reason, { cause: err });
        this.report(this.channelError);
      });
      const wire = new OnWire<Pending>();
      ch.on('ack', (f: { deliveryTag: number; multiple: boolean }) => wire.take(f.deliveryTag, f.multiple, this.confirmed));
      ch.on('nack', (f: { deliveryTag: number; multiple: boolean }) => wire.take(f.deliveryTag, f.multiple, this.refused));
      ch.on('close', () => {
        const failed = this.channelError;
        this.channelError = undefined;
        if (this.ch === ch) {
          this.ch = undefined;
          this.wire = undefined;
        }
        // Unconfirmed: a server-side channel error fails them; a dropped connection re-sends them (same id).
        for (const p of wire.drain()) {
          if (p.settled) continue;
          if (failed) this.settle(p, failed);
          else this.returned.push(p);
        }
        this.draining = false;
        if (this.returned.length > 0) this.absorbReturned();
        // A channel error leaves the connection up: open a new channel on it. A dropped
        // connection closes its channels first; recovery's 'connect' will attach again.
        if (failed) this.retryAttach(model);
      });
      this.ch = ch;
      this.wire = wire;
      this.batchWrites = writeBatcher(model);
      this.fatal = undefined;
      this.attachFailures = 0;
      this.pump();
    } catch (err) {
      if (stale()) return;
      const e =
        err instanceof HeraldError
          ? err
          : new HeraldError(ErrorCodes.PUBLISH_FAILED, `cannot open a publish channel: ${(err as Error).message}`, { cause: err });
      if (e.message === MISSING_EXCHANGE) {
        this.fatal = e;
        this.failAll(e);
      }
      this.report(e);
      this.retryAttach(model);
    }
  }

  private retryAttach(model: ChannelModel): void {
    const delay = Math.min(this.s.reconnectMaxDelayMs, this.s.reconnectInitialDelayMs * 2 ** this.attachFailures++);
    later(delay, () => {
      if (model === this.conn.current && !this.ch) void this.attach(model);
    });
  }

  /**
   * Rejects everything not on the wire: used when no retry could succeed (the exchange is missing).
   * Settling admits blocked publishes into the queue, and the loop rejects those too.
   */
  private failAll(err: HeraldError): void {
    this.absorbReturned();
    for (let i = this.head; i < this.queue.length; i++) {
      const p = this.queue[i];
      if (p) this.settle(p, err);
    }
    this.queue = [];
    this.head = 0;
  }

  private sweep(): void {
    const now = Date.now() - this.epoch;
    const timedOut = (p: Pending) =>
      new HeraldError(ErrorCodes.TIMEOUT, `event ${p.event.id} not confirmed within ${this.s.confirmTimeoutMs} ms`, {
        details: { id: p.event.id },
      });
    // Deadlines grow with publish order, and both collections are in publish order: stop early.
    // settle() takes the settled from the front of `order` (admitting blocked ones at its end).
    while (this.orderHead < this.order.length) {
      const p = this.order[this.orderHead] as Pending;
      if (p.settled) this.trimOrder();
      else if (p.deadline > now) break;
      else this.settle(p, timedOut(p));
    }
    while (this.blockedHead < this.blocked.length) {
      const p = this.blocked[this.blockedHead] as Pending;
      if (!p.settled && p.deadline > now) break;
      this.blockedHead++;
      if (!p.settled) {
        p.settled = true;
        p.unlisten?.();
        p.reject(timedOut(p));
      }
    }
  }

  private report(err: Error): void {
    try {
      this.s.onError?.(err);
    } catch {
      // A throwing error callback must not break the publisher.
    }
  }
}

/**
 * Creates a publisher for one sender. It connects in the background and returns at once; publishes
 * issued before the connection is up wait in the bounded buffer.
 *
 * Failure: bad options throw a ValidationError at once (INVALID_CONFIG / INVALID_SENDER). Each
 * `publish` resolves when RabbitMQ confirmed the event (persistent, so it is on disk) and rejects
 * with a HeraldError: INVALID_* / EVENT_TOO_LARGE for bad input (nothing is sent), PUBLISH_FAILED
 * on a nack or when RabbitMQ closes the channel because of the publish (e.g. `herald.ingest` does
 * not exist — then later publishes reject at once until a reconnect finds the exchange), TIMEOUT
 * after `confirmTimeoutMs`, CLOSED after close().
 *
 * Reconnect: the connection recovers with backoff, forever. Events unconfirmed when it dropped are
 * re-sent first, in their original order and with the same id (so the log de-duplicates them),
 * then those published during the outage. At most `maxPending` events are admitted (buffered or
 * unconfirmed); further publishes wait, in order, for room. `pending` counts admitted events only.
 * close() waits for every pending publish to settle: during an outage that is until the
 * reconnect, or until `confirmTimeoutMs` (with 0, possibly forever).
 */
export function createPublisher<E extends EventMap = AnyEvents>(options: PublisherOptions): Publisher<E> {
  // The map is compile-time only; at run time every publisher takes any type.
  return new PublisherImpl(options) as unknown as Publisher<E>;
}

/** The error of a publish whose caller's signal fired; `cause` is the signal's reason. */
function aborted(signal: AbortSignal, id: string | undefined): HeraldError {
  return new HeraldError(ErrorCodes.ABORTED, id ? `publish of event ${id} aborted` : 'publish aborted', {
    cause: signal.reason,
    details: id ? { id } : {},
  });
}
