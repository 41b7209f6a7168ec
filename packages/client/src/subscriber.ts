import { ErrorCodes, EVENTS_EXCHANGE, fromAmqp, HeraldError, queueTypeArguments, RECEIVER_TOPOLOGY } from '@herald/core';
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { later, type ManagedConnection, openConnection } from './connection.ts';
import { deathCause, publishDeadLetter } from './dead-letter.ts';
import { type NormalizedSubscriber, normalizeSubscriberOptions } from './options.ts';
import { withPayload } from './payload.ts';
import { applyTopology } from './topology.ts';
import type { AnyEvents, EventMap, EventOf, Handler, Subscriber, SubscriberOptions } from './types.ts';

/**
 * Declares herald.events, herald.dead and its queue, on a channel of its own. A user that may not
 * configure `herald.*` (the least privilege of docs/hub.md: the hub declares those) is refused
 * (403): then herald.events is only checked to exist, and its absence is the error.
 */
async function declareReceiverTopology(model: ChannelModel): Promise<void> {
  const probe = await model.createChannel();
  probe.on('error', () => undefined);
  try {
    await applyTopology(probe, RECEIVER_TOPOLOGY);
  } catch (err) {
    if ((err as { code?: unknown }).code !== 403) throw err;
    const check = await model.createChannel();
    check.on('error', () => undefined);
    try {
      await check.checkExchange(EVENTS_EXCHANGE);
    } finally {
      await check.close().catch(() => undefined);
    }
    return;
  }
  await probe.close().catch(() => undefined);
}

/** A handler that also learns which attempt this is (1 = first). */
export type AttemptHandler = (event: EventOf, attempt: number) => Promise<void> | void;

/**
 * Thrown by a handler to give a delivery back without acking it and without counting an attempt:
 * it stays unacknowledged and RabbitMQ redelivers it once the channel closes. Used on shutdown.
 */
export const RELEASE: unique symbol = Symbol('herald.release');

/** One channel's life: deliveries on it can only be acked on it. */
interface Generation {
  readonly ch: ConfirmChannel;
  /** Aborted when the channel closes or the subscriber closes: ends retry delays early. */
  readonly stop: AbortController;
  /** The queue consumed on it, named in its dead letters. */
  readonly queue: string;
  consumerTag?: string;
}

interface Delivery {
  readonly gen: Generation;
  readonly msg: ConsumeMessage;
  done: boolean;
}

/** Failed-attempt counts are kept for at most this many events; the oldest are forgotten. */
const MAX_TRACKED_FAILURES = 10_000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * The consuming engine behind createSubscriber and subscribe.
 *
 * Order: with concurrency 1, one handler runs at a time and deliveries start in queue order; a
 * failing event is retried in place (it stays unacked, later ones wait), so order holds through
 * retries. Handlers still running from a dropped channel count against the concurrency, so a
 * redelivery never overtakes them.
 *
 * Acks: with concurrency 1 completions come in delivery order, so one `ack(allUpTo)` covers a run
 * of them; it is sent every `prefetch / 4` events, or at once when nothing else is waiting. With
 * more concurrency each event is acked by itself (a multiple ack could cover one still running).
 *
 * Attempts are counted per event id in this process, across redeliveries (a drop during a retry
 * delay does not reset the count). A restarted process counts from 1 again: each process gives an
 * event at most maxAttempts tries before dead-lettering it, so no loop is infinite.
 */
export class SubscriberEngine implements Subscriber {
  readonly queue: Promise<string>;
  private readonly s: NormalizedSubscriber;
  private readonly conn: ManagedConnection;
  private gen: Generation | undefined;
  private waiting: Delivery[] = [];
  private waitingHead = 0;
  private window: Delivery[] = [];
  private windowHead = 0;
  private unackedRun = 0;
  private lastDone: Delivery | undefined;
  private running = 0;
  private readonly ackEvery: number;
  private readonly failures = new Map<string, { attempts: number; error: unknown; firstFailedAt: number; lastFailedAt: number }>();
  private readonly idleWaiters: (() => void)[] = [];
  private resolveQueue!: (name: string) => void;
  private closing: Promise<void> | undefined;
  private attachFailures = 0;

  constructor(
    options: SubscriberOptions,
    private readonly handler: AttemptHandler,
  ) {
    this.s = normalizeSubscriberOptions(options);
    this.ackEvery = Math.max(1, Math.floor(this.s.prefetch / 4));
    this.queue = new Promise((resolve) => {
      this.resolveQueue = resolve;
    });
    this.conn = openConnection(this.s, {
      onConnect: (model) => void this.attach(model),
      report: (err) => this.report(err),
    });
    const signal = options.signal;
    if (signal?.aborted) void this.close();
    else signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const gen = this.gen;
      if (gen?.consumerTag) await gen.ch.cancel(gen.consumerTag).catch(() => undefined);
      gen?.stop.abort();
      if (this.running > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      if (gen && this.gen === gen) {
        this.flushAck(gen);
        await gen.ch.close().catch(() => undefined);
      }
      this.gen = undefined;
      await this.conn.close();
    })();
    return this.closing;
  }

  private async attach(model: ChannelModel): Promise<void> {
    const stale = () => model !== this.conn.current || this.closing !== undefined;
    let ch: ConfirmChannel | undefined;
    try {
      ch = await model.createConfirmChannel();
      ch.on('error', (err: Error) =>
        this.report(new HeraldError(ErrorCodes.UNAVAILABLE, `subscriber channel: ${err.message}`, { cause: err })),
      );
      await declareReceiverTopology(model);
      const { queue } = this.s.queue
        ? await ch.assertQueue(this.s.queue, { durable: true, arguments: queueTypeArguments(this.s.queueType) })
        : await ch.assertQueue('', { exclusive: true, durable: false, autoDelete: true });
      for (const key of this.s.bindingKeys) await ch.bindQueue(queue, EVENTS_EXCHANGE, key);
      await ch.prefetch(this.s.prefetch);
      if (stale()) {
        await ch.close().catch(() => undefined);
        return;
      }
      const gen: Generation = { ch, stop: new AbortController(), queue };
      ch.on('close', () => this.onChannelClose(gen, model));
      this.gen = gen;
      this.attachFailures = 0;
      const ok = await ch.consume(queue, (msg) => this.onMessage(gen, msg), { noAck: false });
      gen.consumerTag = ok.consumerTag;
      this.resolveQueue(queue);
    } catch (err) {
      if (stale()) return;
      this.report(new HeraldError(ErrorCodes.UNAVAILABLE, `cannot set up the subscription: ${(err as Error).message}`, { cause: err }));
      await ch?.close().catch(() => undefined);
      this.retryAttach(model);
    }
  }

  private retryAttach(model: ChannelModel): void {
    const delay = Math.min(this.s.reconnectMaxDelayMs, this.s.reconnectInitialDelayMs * 2 ** this.attachFailures++);
    later(delay, () => {
      if (model === this.conn.current && !this.gen && !this.closing) void this.attach(model);
    });
  }

  private onChannelClose(gen: Generation, model: ChannelModel): void {
    gen.stop.abort();
    if (this.gen !== gen) return;
    // Everything unacked on this channel comes back from RabbitMQ; local copies are void.
    this.gen = undefined;
    this.waiting = [];
    this.waitingHead = 0;
    this.window = [];
    this.windowHead = 0;
    this.unackedRun = 0;
    this.lastDone = undefined;
    // With the connection still up (the queue was deleted, a bad ack): open a new channel.
    if (!this.closing) this.retryAttach(model);
  }

  private onMessage(gen: Generation, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // RabbitMQ cancelled the consumer (queue deleted): start over on a new channel.
      this.report(new HeraldError(ErrorCodes.UNAVAILABLE, 'RabbitMQ cancelled the consumer; re-subscribing'));
      void gen.ch.close().catch(() => undefined);
      return;
    }
    const d: Delivery = { gen, msg, done: false };
    if (this.s.concurrency === 1) this.window.push(d);
    this.waiting.push(d);
    this.dispatch();
  }

  private dispatch(): void {
    while (this.running < this.s.concurrency && this.waitingHead < this.waiting.length && !this.closing) {
      const d = this.waiting[this.waitingHead++] as Delivery;
      if (d.gen !== this.gen) continue;
      this.running++;
      void this.process(d).finally(() => {
        this.running--;
        if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
        this.dispatch();
      });
    }
    if (this.waitingHead === this.waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
    }
  }

  private async process(d: Delivery): Promise<void> {
    const { msg, gen } = d;
    let event: EventOf;
    try {
      event = withPayload(
        fromAmqp(
          { routingKey: msg.fields.routingKey, content: msg.content, properties: msg.properties },
          { maxBytes: this.s.maxEventBytes },
        ),
      );
    } catch (err) {
      // An unreadable envelope would fail the same way every time: dead-letter it at once.
      await this.deadLetter(d, deathCause(err, 0, { queue: gen.queue }));
      return;
    }
    // Routed by a binding key wider than the selector (bindingKeys): not ours, acknowledged unseen.
    if (!this.s.matches(event.sender, event.type)) {
      this.complete(d);
      return;
    }
    const id = event.id;
    for (;;) {
      const failed = this.failures.get(id);
      const attempt = (failed?.attempts ?? 0) + 1;
      if (failed && attempt > this.s.maxAttempts) {
        // Exhausted before a drop cut the dead-lettering short: finish the job.
        await this.deadLetter(d, deathCause(failed.error, failed.attempts, { ...failed, queue: gen.queue }), id);
        return;
      }
      try {
        await this.handler(event, attempt);
        this.failures.delete(id);
        this.complete(d);
        return;
      } catch (err) {
        if (err === RELEASE) return;
        const times = this.countFailure(id, attempt, err);
        if (attempt >= this.s.maxAttempts) {
          await this.deadLetter(d, deathCause(err, attempt, { ...times, queue: gen.queue }), id);
          return;
        }
      }
      await sleep(this.s.retryDelayMs, gen.stop.signal);
      // The channel is gone (RabbitMQ redelivers the event) or we are closing (it is requeued).
      if (gen.stop.signal.aborted) return;
    }
  }

  /** Records a failed attempt; returns when the first and this one failed. */
  private countFailure(id: string, attempts: number, error: unknown): { firstFailedAt: number; lastFailedAt: number } {
    const lastFailedAt = Date.now();
    const firstFailedAt = this.failures.get(id)?.firstFailedAt ?? lastFailedAt;
    this.failures.delete(id);
    this.failures.set(id, { attempts, error, firstFailedAt, lastFailedAt });
    if (this.failures.size > MAX_TRACKED_FAILURES) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
    return { firstFailedAt, lastFailedAt };
  }

  private async deadLetter(d: Delivery, cause: ReturnType<typeof deathCause>, id?: string): Promise<void> {
    try {
      await publishDeadLetter(d.gen.ch, d.msg, cause);
    } catch (err) {
      // Not acked: the event comes back on redelivery and dead-lettering is tried again.
      this.report(err as Error);
      return;
    }
    if (id !== undefined) this.failures.delete(id);
    this.complete(d);
  }

  private complete(d: Delivery): void {
    d.done = true;
    const gen = d.gen;
    if (gen !== this.gen) return;
    if (this.s.concurrency !== 1) {
      gen.ch.ack(d.msg);
      return;
    }
    while (this.windowHead < this.window.length && (this.window[this.windowHead] as Delivery).done) {
      this.lastDone = this.window[this.windowHead++];
      this.unackedRun++;
    }
    if (this.windowHead === this.window.length) {
      this.window = [];
      this.windowHead = 0;
    }
    if (this.unackedRun >= this.ackEvery || this.waitingHead === this.waiting.length) this.flushAck(gen);
  }

  private flushAck(gen: Generation): void {
    if (!this.lastDone || this.gen !== gen) return;
    try {
      gen.ch.ack(this.lastDone.msg, true);
    } catch {
      // The channel is closing: RabbitMQ will redeliver, which at-least-once allows.
    }
    this.lastDone = undefined;
    this.unackedRun = 0;
  }

  private report(err: Error): void {
    try {
      this.s.onError?.(err);
    } catch {
      // A throwing error callback must not break the subscriber.
    }
  }
}

/**
 * Subscribes `handler` to the events matching `options.selector`. Returns at once; the queue is
 * declared (named: durable, reused; unnamed: server-named, exclusive) and bound to `herald.events`
 * in the background, with `herald.events` and the dead letters asserted first.
 *
 * The ack contract (see Handler): resolve = ack; throw = retry after `retryDelayMs`, up to
 * `maxAttempts` attempts in all, then the event goes to `herald.dead` (same routing key, headers
 * x-herald-dead-reason/-code, x-herald-attempts, x-herald-first-failed-at/-last-failed-at, epoch
 * ms, x-herald-original-exchange/-routing-key/-queue), where the hub keeps it, and is
 * acked only once RabbitMQ confirmed the dead letter. A delivery whose envelope is invalid is
 * dead-lettered at once with attempts 0. Bad options throw a ValidationError at once.
 *
 * Reconnect: the connection recovers with backoff forever; channel, queue, bindings and consumer
 * are rebuilt, and RabbitMQ redelivers what was unacked (at least once: an event may come twice,
 * de-duplicate by `event.id`). A server-named queue is a new, empty queue after a reconnect: use
 * `queue` to keep events across outages. Order (concurrency 1): the handler sees events in queue
 * order; after a reconnect, redeliveries repeat a few already seen, so "in order" means in order
 * of first arrival. Connection trouble is reported to `onError`, never thrown.
 */
export function createSubscriber<E extends EventMap = AnyEvents>(options: SubscriberOptions, handler: Handler<E>): Subscriber {
  if (typeof handler !== 'function') {
    throw new HeraldError(ErrorCodes.INVALID_CONFIG, 'createSubscriber needs a handler function as its second argument');
  }
  // The map is compile-time only: every delivered event is an EventOf<E> as far as the caller said.
  return new SubscriberEngine(options, (event) => handler(event as EventOf<E>));
}
