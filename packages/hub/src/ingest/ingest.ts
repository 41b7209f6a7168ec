import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, HeraldError, type HeraldEvent } from '@herald/core';
import { type ChannelModel, connect, type Message } from 'amqplib';
import type { Logger } from 'pino';
import { type HubConfig, redactUrl } from '../config/index.ts';
import type { Store, StoredEvent } from '../store/types.ts';
import { type AppendHooks, type AppendRun, appendAll, appendRun, countingHooks } from './append-run.ts';
import { DeadLetterDelivery, deadDelivery } from './dead-delivery.ts';
import { amqpUser, eventDeadLetter } from './dead-letters.ts';
import { decodeBatch } from './decode-batch.ts';
import { type DirectContext, directAppend, publishToIngest } from './direct.ts';
import { closeLink, type Link } from './link.ts';
import { type IngestOutlet, setupArchive, setupRouter } from './mode-setup.ts';
import { onBroker, StepError } from './steps.ts';
import { ARCHIVE_QUEUE, declareShared, ROUTER_QUEUE } from './topology.ts';
import type { DirectOutcome, Ingest, IngestMetrics, IngestOptions, IngestStats, SenderCheck } from './types.ts';
import { errText, unreachable } from './unreachable.ts';

export type { IngestOutlet } from './mode-setup.ts';
export type { DirectOutcome, Ingest, IngestMetrics, IngestOptions, IngestStats, SenderCheck } from './types.ts';

/**
 * Fault injection for the crash tests: `HERALD_FAULT_KILL_AFTER_BATCH=n` makes the process kill
 * itself (SIGKILL) right after its n-th store transaction, before forwarding or acknowledging.
 */
const KILL_AFTER_APPEND = Number(process.env.HERALD_FAULT_KILL_AFTER_BATCH ?? 0) || 0;
/** A batch is also cut when its bodies reach this many bytes. */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/** How long a stopping hub keeps retrying its batch in flight against a failing store. */
const STOP_GRACE_MS = 5000;
/**
 * Acknowledgements are coalesced: one ack(multiple) covers every batch that became ready within
 * this window, or goes out at once when a quarter of the prefetch waits for it. At low rates a batch
 * is one event, so this turns one ack frame per event into one per window, for the hub and for
 * RabbitMQ alike. A later ack only means that a crash redelivers a few more messages, which the
 * log recognises as duplicates.
 */
const ACK_WINDOW_MS = 10;

/** Creates the ingest pipeline of DESIGN.md §2 for `config.mode`. Nothing happens before start(). */
export function createIngest(options: IngestOptions): Ingest {
  return new IngestPipeline(options);
}

/** A promise wrapped so that async functions can hand it over without awaiting it (a returned promise is adopted). */
interface Confirmation {
  confirmed: Promise<void>;
}

class IngestPipeline implements Ingest {
  private readonly config: HubConfig;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly outlet: IngestOutlet | undefined;
  private readonly senderCheck: SenderCheck | undefined;
  private readonly inspect: IngestOptions['inspect'];
  private readonly metrics: IngestMetrics | undefined;
  private readonly dead: DeadLetterDelivery;
  private readonly hooks: AppendHooks<unknown>;
  /** The direct path's view of this ingest: refused while the mode's setup runs (settingUp). */
  private readonly direct: DirectContext;
  private link: Link | undefined;
  /** Bumped on every new connection; a batch from an older generation is never acknowledged. */
  private gen = 0;
  private pending: Message[] = [];
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private stopRequested = false;
  private stoppingSince = 0;
  private consuming = false;
  private storeHealthy = true;
  /** The mode's setup runs (mode-setup.ts): the direct path is refused, so the flow sees only what setup drains. */
  private settingUp = false;
  private lock: Promise<unknown> = Promise.resolve();
  /** The highest offset known in the log. */
  private head: bigint | undefined;
  /**
   * The acknowledgement of the newest batch, which waits for the outlet. Batches are acknowledged
   * in order (the outlet settles them in order), so when this settles every earlier one has. How
   * many wait is bounded by the prefetch: RabbitMQ delivers no more than that unacknowledged.
   */
  private lastAck: Promise<void> = Promise.resolve();
  private reconnecting = false;
  private readonly counters: IngestStats = { stored: 0, duplicates: 0, dead: 0, batches: 0, reconnects: 0 };

  constructor(options: IngestOptions) {
    this.config = options.config;
    this.store = options.store;
    this.log = options.logger.child({ part: 'ingest' });
    this.outlet = options.outlet;
    this.senderCheck = options.senderCheck;
    this.inspect = options.inspect;
    this.metrics = options.metrics;
    this.dead = new DeadLetterDelivery(this.store, this.log, amqpUser(this.config.amqpUrl), (code) => {
      this.counters.dead++;
      this.metrics?.deadLetter(code);
    });
    this.hooks = countingHooks(
      this.counters,
      this.metrics,
      (offset) => {
        if (this.head === undefined || offset > this.head) this.head = offset;
      },
      () => this.outlet?.recheckHead(),
    );
    this.direct = {
      store: this.store,
      hooks: this.hooks,
      outlet: this.outlet,
      check: (event, producer) => this.inspect?.(event, producer),
      serially: (fn) =>
        this.withLock(() => {
          if (!this.settingUp) return fn();
          throw new HeraldError(ErrorCodes.UNAVAILABLE, 'this hub is reconnecting to RabbitMQ; try again shortly');
        }),
      storeAnswered: (ok) => {
        this.storeHealthy = ok;
      },
      maxUnforwarded: this.config.publishMaxUnforwarded,
      unforwarded: { events: 0 },
    };
  }

  stats(): IngestStats {
    return { ...this.counters };
  }

  headOffset(): bigint | undefined {
    return this.head;
  }

  isConnected(): boolean {
    return this.link !== undefined;
  }

  isReady(): boolean {
    return this.link !== undefined && this.consuming && this.storeHealthy && !this.stopRequested;
  }

  async start(): Promise<void> {
    try {
      await this.connectAndSetup();
    } catch (err) {
      if (err instanceof StepError && (err.side === 'store' || err.original instanceof HeraldError)) throw err.original;
      throw unreachable(this.config.amqpUrl, err instanceof StepError ? err.original : err);
    }
    this.loop = this.runLoop();
    this.log.info({ mode: this.config.mode, amqp: redactUrl(this.config.amqpUrl) }, 'ingest started');
  }

  async stop(): Promise<void> {
    if (this.stopRequested) return;
    this.stopRequested = true;
    const link = this.link;
    this.consuming = false;
    // Stop deliveries first, while the loop keeps storing as usual: a delivery that arrives before
    // cancel-ok is taken in like any other. Only then the loop is told to finish what it holds.
    if (link) await link.consumeCh.cancel('herald-hub-ingest').catch(() => undefined);
    this.stopping = true;
    this.stoppingSince = Date.now();
    this.wake?.();
    await this.loop;
    if (this.pending.length > 0)
      this.log.warn({ left: this.pending.length }, 'stopped with delivered messages not stored: RabbitMQ redelivers them');
    await this.lock;
    this.link = undefined;
    if (link) await closeLink(link);
    this.log.info(this.stats(), 'ingest stopped');
  }

  async publish(event: HeraldEvent): Promise<void> {
    const link = this.link;
    if (!link) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'RabbitMQ is not connected; try again shortly');
    await publishToIngest(link.pubCh, event);
  }

  async append(events: readonly HeraldEvent[], producer: string | undefined): Promise<DirectOutcome[]> {
    if (this.config.mode !== 'router')
      throw new HeraldError(
        ErrorCodes.CONFLICT,
        'the direct publish path needs the hub in router mode (HERALD_MODE=router): in archive mode only herald.ingest reaches herald.events',
      );
    if (this.stopRequested || this.loop === undefined)
      throw new HeraldError(ErrorCodes.UNAVAILABLE, 'this hub is not ingesting (starting, stopping or a standby); try again shortly');
    return directAppend(this.direct, events, producer);
  }

  // ---- connection -------------------------------------------------------------------------

  private async connectAndSetup(): Promise<void> {
    const conn = await onBroker(() =>
      connect(this.config.amqpUrl, { noDelay: true, clientProperties: { connection_name: `herald-hub ${this.config.mode}` } }),
    );
    conn.on('error', (err) => this.log.warn({ err: errText(err) }, 'RabbitMQ connection error'));
    let pubConn: ChannelModel | undefined;
    try {
      // Publishing on a connection of its own: when RabbitMQ applies flow control to the hub's
      // publishes, deliveries and acknowledgements on the consuming connection keep moving.
      pubConn = await onBroker(() =>
        connect(this.config.amqpUrl, { noDelay: true, clientProperties: { connection_name: `herald-hub ${this.config.mode} publish` } }),
      );
      pubConn.on('error', (err) => this.log.warn({ err: errText(err) }, 'RabbitMQ connection error'));
      const consumeCh = await onBroker(() => conn.createChannel());
      consumeCh.on('error', (err) => this.log.warn({ err: errText(err) }, 'RabbitMQ channel error'));
      const publishConn = pubConn;
      const pubCh = await onBroker(() => publishConn.createConfirmChannel());
      pubCh.on('error', (err) => this.log.warn({ err: errText(err) }, 'RabbitMQ channel error'));
      const gen = ++this.gen;
      this.pending = [];
      const link: Link = { conn, pubConn, consumeCh, pubCh, gen, ackUpTo: undefined, unacked: 0, ackTimer: undefined };
      this.link = link;
      await onBroker(() => declareShared(consumeCh, this.config.queueType));
      this.settingUp = true;
      try {
        await this.withLock(async () => undefined); // a direct append in the line finishes first
        await this.setupMode(link);
      } finally {
        this.settingUp = false;
      }
      // From here on a lost channel or connection means: start over on a new connection.
      const lost = (why: string) => () => this.connectionLost(link, why);
      conn.on('close', lost('connection closed'));
      pubConn.on('close', lost('publish connection closed'));
      consumeCh.on('close', lost('consume channel closed'));
      pubCh.on('close', lost('publish channel closed'));
      await onBroker(() => consumeCh.prefetch(this.config.prefetch));
      const queue = this.config.mode === 'router' ? ROUTER_QUEUE : ARCHIVE_QUEUE;
      await onBroker(() =>
        consumeCh.consume(
          queue,
          (msg) => {
            if (msg === null) {
              this.log.warn({ queue }, 'RabbitMQ cancelled the ingest consumer (queue deleted?); reconnecting');
              this.connectionLost(link, 'consumer cancelled');
              return;
            }
            if (link.gen !== this.gen) return;
            this.pending.push(msg);
            this.wake?.();
          },
          { noAck: false, consumerTag: 'herald-hub-ingest' },
        ),
      );
      this.consuming = true;
    } catch (err) {
      this.consuming = false;
      this.link = undefined;
      await conn.close().catch(() => undefined);
      await pubConn?.close().catch(() => undefined);
      throw err;
    }
  }

  private connectionLost(link: Link, why: string): void {
    if (this.stopRequested || link.gen !== this.gen || this.link !== link) return;
    this.link = undefined;
    this.consuming = false;
    this.pending = [];
    this.gen++;
    clearTimeout(link.ackTimer);
    link.conn.close().catch(() => undefined);
    link.pubConn.close().catch(() => undefined);
    this.log.warn({ why }, 'lost RabbitMQ; reconnecting (unacknowledged messages will be redelivered)');
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    let delay = 100;
    let attempt = 0;
    try {
      while (!this.stopRequested) {
        await sleep(delay);
        if (this.stopRequested) return;
        attempt++;
        try {
          await this.connectAndSetup();
          if (this.stopRequested) {
            await this.link?.conn.close().catch(() => undefined);
            await this.link?.pubConn.close().catch(() => undefined);
            return;
          }
          this.counters.reconnects++;
          this.log.info({ attempt }, 'reconnected to RabbitMQ; ingest resumed');
          return;
        } catch (err) {
          const level = attempt === 1 || attempt % 10 === 0 ? 'warn' : 'debug';
          this.log[level]({ attempt, err: errText(err) }, 'reconnect to RabbitMQ failed; retrying');
          delay = Math.min(delay * 2, 5000);
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  /** The mode's setup (mode-setup.ts), with this ingest's drain and head. */
  private setupMode(link: Link): Promise<void> {
    const m = {
      config: this.config,
      log: this.log,
      conn: link.conn,
      ch: link.consumeCh,
      outlet: this.outlet,
      head: async () => {
        this.head ??= (await this.withLock(() => this.store.headOffset())) ?? 0n;
        return this.head;
      },
      drain: (queue: string) => this.drain(link, queue),
    };
    return this.config.mode === 'router' ? setupRouter(m) : setupArchive(m);
  }

  /** Takes every message of `queue` through the pipeline, batch by batch (basic.get: rare, so plain). */
  private async drain(link: Link, queue: string): Promise<number> {
    let total = 0;
    for (;;) {
      const batch: Message[] = [];
      while (batch.length < this.config.batchSize) {
        const msg = await onBroker(() => link.consumeCh.get(queue, { noAck: false }));
        if (msg === false) break;
        batch.push(msg);
      }
      if (batch.length === 0) return total;
      const confirmed = await this.withLock(() => this.processBatch(link, batch));
      if (confirmed === false) throw new StepError('rabbitmq', new Error(`connection lost while draining ${queue}`));
      // At once: the queue is deleted once empty, and unacknowledged messages keep it from being so.
      await this.ackWhenConfirmed(link, batch, confirmed.confirmed, true);
      if (link.gen !== this.gen) throw new StepError('rabbitmq', new Error(`connection lost while draining ${queue}`));
      total += batch.length;
    }
  }

  // ---- the batch loop ---------------------------------------------------------------------

  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Group commit: the next batch is whatever arrived while the previous one was being stored. */
  private async runLoop(): Promise<void> {
    // When stopping, what was delivered before the consumer was cancelled is still taken in.
    while (!this.stopping || (this.pending.length > 0 && this.link !== undefined)) {
      const link = this.link;
      if (this.pending.length === 0 || !link) {
        if (this.stopping) return;
        await new Promise<void>((r) => {
          this.wake = r;
        });
        this.wake = undefined;
        continue;
      }
      let bytes = 0;
      let n = 0;
      const max = this.store.appendBatchSize(Math.min(this.pending.length, this.config.batchSize));
      while (n < max && (n === 0 || bytes < MAX_BATCH_BYTES)) bytes += (this.pending[n++] as Message).content.length;
      const batch = this.pending.splice(0, n);
      const confirmed = await this.withLock(() => this.processBatch(link, batch));
      if (confirmed === false) {
        if (this.stopping) break;
        continue;
      }
      // The next batch is stored while RabbitMQ confirms this one's forwards.
      this.lastAck = this.ackWhenConfirmed(link, batch, confirmed.confirmed);
    }
    // The outlet may be unable to confirm (RabbitMQ down): what it has not confirmed by then is
    // not acknowledged, and RabbitMQ redelivers it to the next hub.
    await Promise.race([this.lastAck, sleep(STOP_GRACE_MS, undefined, { ref: false })]);
    if (this.link) this.flushAck(this.link);
  }

  /**
   * Acknowledges a stored batch once the outlet has it out (at once without an outlet), coalesced
   * with the batches after it for up to ACK_WINDOW_MS (`now`: at once). These run in batch order:
   * the outlet settles runs in order. When the outlet stops first, nothing is acknowledged:
   * RabbitMQ redelivers it to the next hub, whose log recognises it (at least once, never a gap).
   */
  private async ackWhenConfirmed(link: Link, batch: Message[], confirmed: Promise<void>, now = false): Promise<void> {
    try {
      await confirmed;
    } catch {
      return;
    }
    if (link.gen !== this.gen) return;
    const last = batch[batch.length - 1] as Message;
    if (link.ackUpTo === undefined || last.fields.deliveryTag > link.ackUpTo.fields.deliveryTag) link.ackUpTo = last;
    link.unacked += batch.length;
    if (now || link.unacked >= this.config.prefetch / 4) this.flushAck(link);
    else if (link.ackTimer === undefined) {
      link.ackTimer = setTimeout(() => this.flushAck(link), ACK_WINDOW_MS);
      link.ackTimer.unref();
    }
  }

  /** Sends the coalesced ack (multiple) of `link`, if any; a link that is gone acknowledges nothing. */
  private flushAck(link: Link): void {
    clearTimeout(link.ackTimer);
    link.ackTimer = undefined;
    const upTo = link.ackUpTo;
    link.ackUpTo = undefined;
    link.unacked = 0;
    if (upTo === undefined || link.gen !== this.gen) return;
    try {
      link.consumeCh.ack(upTo, true);
    } catch {
      // the channel is gone: the messages come back and are recognised as duplicates
    }
  }

  /**
   * Stores one batch, delivers its dead letters and hands what was stored to the outlet. Retries
   * with backoff until it succeeds, the connection it came on is gone (then RabbitMQ redelivers
   * it), or the hub is stopping and the grace ran out (both: false). Resolves with what the
   * batch's acknowledgement waits for: the outlet having the batch out.
   *
   * A message that is not an event (decodeBatch), or an event the store refuses for its data,
   * becomes a dead letter and the rest of the batch goes on; only a store that is unavailable (or
   * RabbitMQ) makes the batch wait. Each step is done once: a retry resumes where the batch stopped.
   */
  private async processBatch(link: Link, batch: Message[]): Promise<Confirmation | false> {
    const now = Date.now();
    const { events, received, dead } = decodeBatch(batch, {
      maxBytes: this.config.maxEventBytes,
      now,
      senderCheck: this.senderCheck,
      inspect: this.inspect,
    });
    const run: AppendRun<Message> = appendRun(events, received);
    const hooks: AppendHooks<Message> = {
      ...this.hooks,
      refused: (event, msg, err) => {
        const from = { exchange: msg.fields.exchange, routingKey: msg.fields.routingKey };
        dead.push(deadDelivery(eventDeadLetter(event, err, from, now)));
      },
    };
    let appended = false;
    let delay = 50;
    let failing: 'store' | 'rabbitmq' | undefined;
    for (;;) {
      if (link.gen !== this.gen) return this.abandoned(run.stored);
      try {
        if (!appended) {
          await appendAll(this.store, run, hooks);
          appended = true;
          if (KILL_AFTER_APPEND > 0 && this.counters.batches >= KILL_AFTER_APPEND) process.kill(process.pid, 'SIGKILL');
        }
        await this.dead.deliver(link.pubCh, dead);
        if (failing) this.log.info({ side: failing }, 'ingest recovered; batch stored');
        this.storeHealthy = true;
        // Handed to the outlet in the serial line, so it sees runs in offset order.
        const out = this.outlet && run.stored.length > 0 ? this.outlet.appended(run.stored) : Promise.resolve();
        return { confirmed: out };
      } catch (err) {
        const side = err instanceof StepError ? err.side : 'store';
        if (side === 'store') this.storeHealthy = false;
        if (failing !== side) {
          this.log.error(
            { side, err: errText(err) },
            `ingest paused: ${side === 'store' ? 'the store' : 'RabbitMQ'} failed; retrying the batch`,
          );
          failing = side;
        }
        if (this.stopping && Date.now() - this.stoppingSince > STOP_GRACE_MS) return this.abandoned(run.stored);
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
        if (side === 'store') await this.store.ping().catch(() => undefined);
      }
    }
  }

  /** A batch given up after its append (its link gone, or the stop's grace over): the flow reads what it stored from the log. */
  private abandoned(stored: readonly StoredEvent[]): false {
    if (stored.length > 0) this.outlet?.recheckHead();
    return false;
  }
}
