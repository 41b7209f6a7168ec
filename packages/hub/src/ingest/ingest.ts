import { setTimeout as sleep } from 'node:timers/promises';
import {
  DEAD_EXCHANGE,
  ErrorCodes,
  EVENTS_EXCHANGE,
  fromAmqp,
  HeraldError,
  type HeraldEvent,
  INGEST_EXCHANGE,
  toAmqp,
  ValidationError,
} from '@herald/core';
import { type Channel, type ChannelModel, type ConfirmChannel, connect, type Message } from 'amqplib';
import type { Logger } from 'pino';
import { type HubConfig, redactUrl } from '../config/index.ts';
import { type AppendResult, READ_MAX_BYTES, type Store, type StoredEvent } from '../store/types.ts';
import { HEADERS_DROPPED_HEADER, isEncodingError } from './amqp-table.ts';
import {
  amqpUser,
  type DeadLetterPublish,
  deadLetterForms,
  eventDeadLetter,
  messageDeadLetter,
  type PendingDeadLetter,
} from './dead-letters.ts';
import { type ForwardMessage, forwardMessage, reducedForwardMessage } from './forward-message.ts';
import { isEncodingFailure, storeFailure } from './store-errors.ts';
import { ALL, ARCHIVE_QUEUE, declareArchive, declareRouterQueue, declareShared, ROUTER_QUEUE, removeArchiveBinding } from './topology.ts';

/**
 * The hub_state key of the router's checkpoint: `{ offset: "<decimal>" }`, the highest offset
 * dispatched to `herald.events`; absent or null when not in router mode.
 */
export const DISPATCHED_KEY = 'router.dispatched';

/** Reads the checkpoint: an object with a decimal string, so no JSON layer turns it into a lossy number. */
async function readCheckpoint(store: Store): Promise<bigint | undefined> {
  const saved = await store.getState<{ offset?: unknown } | null>(DISPATCHED_KEY);
  const raw = saved?.offset;
  return typeof raw === 'string' || typeof raw === 'number' ? BigInt(raw) : undefined;
}
/**
 * Fault injection for the crash tests: `HERALD_FAULT_KILL_AFTER_BATCH=n` makes the process kill
 * itself (SIGKILL) right after its n-th store transaction, before forwarding or acknowledging.
 */
const KILL_AFTER_APPEND = Number(process.env.HERALD_FAULT_KILL_AFTER_BATCH ?? 0) || 0;
/** A batch is also cut when its bodies reach this many bytes. */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/** How long a stopping hub keeps retrying its batch in flight against a failing store. */
const STOP_GRACE_MS = 5000;
/** How often, at most, the router's checkpoint is written (it may lag: re-forwarding is at least once). */
const CHECKPOINT_EVERY_MS = 250;
/**
 * Acknowledgements are coalesced: one ack(multiple) covers every batch that became ready within
 * this window, or goes out at once when a quarter of the prefetch waits for it. At low rates a batch
 * is one event, so this turns one ack frame per event into one per window, for the hub and for
 * RabbitMQ alike. A later ack only means that a crash redelivers a few more messages, which the
 * log recognises as duplicates.
 */
const ACK_WINDOW_MS = 10;

/** Counters for metrics and the bench. */
export interface IngestStats {
  /** Events newly stored. */
  stored: number;
  /** Messages whose id was in the log already (acknowledged, not stored again). */
  duplicates: number;
  /** Messages turned into dead letters. */
  dead: number;
  /** Store transactions. */
  batches: number;
  /** Events published to `herald.events` (router mode). */
  forwarded: number;
  /** RabbitMQ reconnects. */
  reconnects: number;
  /** The highest offset forwarded to `herald.events` (router mode). */
  dispatched: string | undefined;
}

/**
 * The ingest pipeline: RabbitMQ → log (→ `herald.events` in router mode).
 *
 * Guarantee: an ingest message is acknowledged only after the transaction that stores it (or its
 * dead letter) committed, and in router mode only after `herald.events` confirmed the forward.
 *
 * Failure: when the store is unavailable (store-errors.ts says what counts), the batch in flight is
 * retried with backoff and nothing is acknowledged; RabbitMQ stops delivering once the prefetch
 * window is full, so ingest pauses and resumes by itself. A message that is not an event, and an
 * event the store refuses for its data, goes to the `dead_letters` table (sanitized, so the write
 * cannot fail for the same reason) and to `herald.dead` with its reason; the rest of its batch is
 * stored, and the message is acknowledged. A dead letter the store refuses all the same is logged
 * and goes to `herald.dead` only. No single message stops the flow.
 *
 * Reconnect: when RabbitMQ drops the connection the hub reconnects with backoff (100 ms doubling to
 * 5 s, forever), recreates its channels and topology and consumes again; messages that were not
 * acknowledged come back and the store drops the ids it already has (at least once, no gap). In
 * router mode events stored but not yet forwarded are forwarded from the log first.
 */
export interface Ingest {
  /**
   * Connects (one attempt), declares the topology of the configured mode, moves what the other
   * mode left in its queue into the log, and starts consuming. Rejects with a HeraldError
   * (UNAVAILABLE) whose message is one line saying where RabbitMQ was expected and how to start it.
   */
  start(): Promise<void>;
  /**
   * Stops consuming, stores what was already delivered (giving up after 5 s of store failure: what
   * is not acknowledged is redelivered to the next hub), writes the router checkpoint, closes.
   */
  stop(): Promise<void>;
  /**
   * Publishes an event to `herald.ingest` on the hub's confirm channel; resolves when RabbitMQ
   * confirmed it. Rejects with UNAVAILABLE while RabbitMQ is disconnected, PUBLISH_FAILED on a nack,
   * INVALID_EVENT (a ValidationError) when amqplib cannot encode the event.
   */
  publish(event: HeraldEvent): Promise<void>;
  /**
   * Publishes stored events to `herald.events` on the hub's confirm channel, in the order given,
   * each with x-herald-offset (and x-herald-replay when `replay` is given); resolves when RabbitMQ
   * confirmed them all. This is the `Forward` the dispatcher needs. Rejects with UNAVAILABLE while
   * RabbitMQ is disconnected, PUBLISH_FAILED on a nack; the caller retries (at least once). An
   * event whose headers cannot be published (stored before the limits were checked at ingest) goes
   * without them, marked `x-herald-headers-dropped: "true"`, with one warning, so it never fails
   * the forward.
   */
  forward(events: readonly StoredEvent[], options?: { replay?: string }): Promise<void>;
  /** Connected, consuming, and the store answered the last write. */
  isReady(): boolean;
  /** Connected to RabbitMQ (consuming or not). */
  isConnected(): boolean;
  stats(): IngestStats;
  /**
   * The highest offset this ingest stored or found in the log; undefined before start. Everything
   * on `herald.events` from this hub is at or below it by the time it is published.
   */
  headOffset(): bigint | undefined;
}

/**
 * Whether the RabbitMQ user `userId` may publish as `sender`: the reason it may not (one line, e.g.
 * `user_id herald-x may not publish as sender billing`), or undefined when it may, or when `userId`
 * is not a user the hub manages (guest, the hub's own user). Synchronous, since it runs for every
 * ingest message that carries a user_id: answer from memory.
 */
export type SenderCheck = (userId: string, sender: string) => string | undefined;

/** What the ingest pipeline needs. */
export interface IngestOptions {
  config: HubConfig;
  store: Store;
  logger: Logger;
  /**
   * Router mode: what happens to each newly stored run of events, in offset order (e.g. the
   * dispatcher's publish(), which may hold some for a pause). It resolves once every event is
   * published (in order, before any later run) or durably held, with `confirmed` for RabbitMQ's
   * confirms of the published ones. A rejection is retried with backoff; a `confirmed` that rejects
   * makes the hub reconnect and forward again from its checkpoint. Either way the ingest messages
   * stay unacknowledged until their events are confirmed. Default: forward() them all.
   */
  dispatch?: ((events: readonly StoredEvent[]) => Promise<{ confirmed: Promise<void> }>) | undefined;
  /**
   * Checks the `user_id` of each ingest message against the sender of its routing key (DESIGN.md
   * §8; RabbitMQ itself made sure the user_id is the publishing connection's user). A message it
   * refuses becomes a dead letter (INVALID_EVENT) with its reason, like any message that is not an
   * event, and the flow goes on; should it throw, the message becomes a dead letter with that error.
   * In archive mode RabbitMQ has delivered the message before the hub sees it: the check keeps it
   * out of the log only. Messages without user_id are not checked. Default: none.
   */
  senderCheck?: SenderCheck | undefined;
  /** Sees each event before it is stored (the catalog's observation and validation); a throw dead-letters it with that error. */
  inspect?: ((event: HeraldEvent, userId: unknown) => void) | undefined;
  /** Counts what goes through (metrics/metrics.ts). Default: nothing counted. */
  metrics?: IngestMetrics | undefined;
}

/** What ingest reports as it goes; each call is cheap (no I/O, no allocation per event). */
export interface IngestMetrics {
  /** Events newly stored in the log. */
  stored(events: readonly StoredEvent[]): void;
  /** One append took `seconds` for `events` events. */
  appended(seconds: number, events: number): void;
  /** Events published to herald.events and confirmed (not replays). */
  forwarded(events: readonly StoredEvent[]): void;
  /** A dead letter, by its error code. */
  deadLetter(code: string): void;
}

/** Creates the ingest pipeline of DESIGN.md §2 for `config.mode`. Nothing happens before start(). */
export function createIngest(options: IngestOptions): Ingest {
  return new IngestPipeline(options);
}

function errText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return code !== undefined && !err.message.includes(String(code)) ? `${err.message} (${String(code)})` : err.message;
  }
  return String(err);
}

/** How many forwards without headers are remembered, so each event's warning is logged once. */
const DROPPED_WARNINGS_KEPT = 10_000;

/** A dead letter of the batch in flight, and how far it got (a retried batch does not redo a step). */
interface DeadDelivery {
  readonly pending: PendingDeadLetter;
  /** The row was written, or refused for its data (then `notStored` says why). */
  settled: boolean;
  notStored?: string | undefined;
  /** RabbitMQ confirmed it on herald.dead, or it could not be encoded in any form. */
  published: boolean;
}

/** The events of a batch still to store, in order, with the messages they came on. */
interface AppendRun {
  /** Runs of events still to append; a run the store refuses for its data is split in two. */
  chunks: { events: HeraldEvent[]; received: Message[] }[];
  stored: StoredEvent[];
}

/** A step failed: which side, for logs and readiness. */
class StepError extends Error {
  constructor(
    readonly side: 'store' | 'rabbitmq',
    readonly original: unknown,
  ) {
    super(errText(original));
  }
}

async function onStore<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new StepError('store', err);
  }
}

async function onBroker<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new StepError('rabbitmq', err);
  }
}

/** A promise wrapped so that async functions can hand it over without awaiting it (a returned promise is adopted). */
interface Confirmation {
  confirmed: Promise<void>;
}

interface Link {
  /** Consumes and acknowledges. */
  conn: ChannelModel;
  /** Publishes (forwards, dead letters, API events). */
  pubConn: ChannelModel;
  /** Consumes (or gets, while draining) and acknowledges. */
  consumeCh: Channel;
  /** Publishes forwards, dead letters and API events, with confirms. */
  pubCh: ConfirmChannel;
  gen: number;
  /** The newest message whose batch is stored (and confirmed) but not yet acknowledged. */
  ackUpTo: Message | undefined;
  /** Messages that ackUpTo covers. */
  unacked: number;
  /** Sends the coalesced ack when the window ends. */
  ackTimer: NodeJS.Timeout | undefined;
}

class IngestPipeline implements Ingest {
  private readonly config: HubConfig;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly dispatch: ((events: readonly StoredEvent[]) => Promise<{ confirmed: Promise<void> }>) | undefined;
  private readonly senderCheck: SenderCheck | undefined;
  private readonly inspect: IngestOptions['inspect'];
  private readonly metrics: IngestMetrics | undefined;
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
  private lock: Promise<unknown> = Promise.resolve();
  /** The highest offset known in the log. */
  private head: bigint | undefined;
  /** Router: the highest offset confirmed on herald.events; undefined when not forwarding. */
  private dispatched: bigint | undefined;
  /** Router: the highest offset published to herald.events on the current link (confirmed or not). */
  private published: bigint | undefined;
  /** Router: settles once everything published so far on the current link is confirmed; rejects if any was not. */
  private confirmedTail: Promise<void> = Promise.resolve();
  /**
   * The acknowledgement of the newest batch, which waits for its confirms. Batches are acknowledged
   * in order (their confirms settle in order), so when this settles every earlier one has. How many
   * wait is bounded by the prefetch: RabbitMQ delivers no more than that unacknowledged.
   */
  private lastAck: Promise<void> = Promise.resolve();
  private persistedDispatched: bigint | undefined;
  private lastCheckpointAt = 0;
  /** The checkpoint write in flight, if any. */
  private checkpointing: Promise<void> | undefined;
  private reconnecting = false;
  /** Offsets forwarded without their headers whose warning was logged already (bounded). */
  private readonly droppedWarned = new Set<bigint>();
  private readonly counters: IngestStats = {
    stored: 0,
    duplicates: 0,
    dead: 0,
    batches: 0,
    forwarded: 0,
    reconnects: 0,
    dispatched: undefined,
  };

  constructor(options: IngestOptions) {
    this.config = options.config;
    this.store = options.store;
    this.log = options.logger.child({ part: 'ingest' });
    this.dispatch = options.dispatch;
    this.senderCheck = options.senderCheck;
    this.inspect = options.inspect;
    this.metrics = options.metrics;
  }

  stats(): IngestStats {
    return { ...this.counters, dispatched: this.dispatched?.toString() };
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
    await this.withLock(() => this.persistCheckpoint(true)).catch(() => undefined);
    this.link = undefined;
    if (link) {
      // Closing the channels first flushes their acknowledgements (a connection close can overtake
      // frames still queued on a channel), so nothing stored is redelivered needlessly.
      await link.consumeCh.close().catch(() => undefined);
      await link.pubCh.close().catch(() => undefined);
      await link.conn.close().catch(() => undefined);
      await link.pubConn.close().catch(() => undefined);
    }
    this.log.info(this.stats(), 'ingest stopped');
  }

  async publish(event: HeraldEvent): Promise<void> {
    const link = this.link;
    if (!link) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'RabbitMQ is not connected; try again shortly');
    const { routingKey, content, properties } = toAmqp(event);
    await new Promise<void>((resolve, reject) => {
      try {
        link.pubCh.publish(INGEST_EXCHANGE, routingKey, content, properties, (err) => {
          if (err) reject(new HeraldError(ErrorCodes.PUBLISH_FAILED, 'RabbitMQ refused the publish (nack)', { cause: err }));
          else resolve();
        });
      } catch (err) {
        // amqplib refusing to encode the event is the event's fault, and retrying cannot help.
        if (isEncodingError(err))
          reject(
            new ValidationError(ErrorCodes.INVALID_EVENT, `the event cannot be encoded as an AMQP message: ${errText(err)}`, {
              cause: err,
            }),
          );
        else reject(new HeraldError(ErrorCodes.UNAVAILABLE, 'RabbitMQ channel closed; try again shortly', { cause: err }));
      }
    });
  }

  async forward(events: readonly StoredEvent[], options: { replay?: string } = {}): Promise<void> {
    const link = this.link;
    if (!link) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'RabbitMQ is not connected; try again shortly');
    try {
      await this.publishEvents(link, events, options.replay);
    } catch (err) {
      throw new HeraldError(ErrorCodes.PUBLISH_FAILED, `forwarding to ${EVENTS_EXCHANGE} failed: ${errText(err)}`, { cause: err });
    }
  }

  /**
   * Hands the events to the channel now, in order, and resolves once RabbitMQ confirmed all of them
   * (one callback shared by the batch, rather than waitForConfirms(), which waits for everything
   * outstanding on the channel and allocates a promise per message).
   */
  private publishEvents(link: Link, events: readonly StoredEvent[], replay?: string): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let left = events.length;
      let failed = false;
      const confirm = (err: unknown) => {
        if (failed) return;
        if (err) {
          failed = true;
          reject(err instanceof Error ? err : new Error(String(err)));
        } else if (--left === 0) {
          if (replay === undefined) this.metrics?.forwarded(events);
          resolve();
        }
      };
      try {
        for (const event of events) this.publishForward(link, event, replay, confirm);
      } catch (err) {
        confirm(err ?? new Error('channel closed'));
      }
    });
  }

  /**
   * Hands one forward to the channel. A stored event whose headers cannot be published (too large
   * as amqplib encodes them, or a name or value it cannot write: a log written before the limits
   * were checked at ingest) goes out without them, marked `x-herald-headers-dropped`, so it never
   * fails the forward and never makes the hub forward it again and again. Should even that form
   * not encode, the event is left out of the flow (it stays in the log) and `confirm` is called for
   * it. Throws what the channel throws otherwise (closed).
   */
  private publishForward(link: Link, event: StoredEvent, replay: string | undefined, confirm: (err: unknown) => void): void {
    let message: ForwardMessage = forwardMessage(event, replay);
    for (;;) {
      try {
        link.pubCh.publish(EVENTS_EXCHANGE, message.routingKey, message.content, message.properties, confirm);
        break;
      } catch (err) {
        if (!isEncodingError(err)) throw err;
        if (message.dropped === undefined) {
          message = reducedForwardMessage(event, replay, `amqplib could not encode it: ${errText(err)}`);
          continue;
        }
        this.log.error(
          { offset: event.offset.toString(), id: event.id, err: errText(err) },
          `an event cannot be published to ${EVENTS_EXCHANGE} even without its headers: left out of the flow, it stays in the log`,
        );
        confirm(undefined);
        return;
      }
    }
    if (message.dropped !== undefined) this.warnDropped(event, message.dropped);
  }

  /** Logs once per event (for the last DROPPED_WARNINGS_KEPT of them) that it went out without its headers. */
  private warnDropped(event: StoredEvent, why: string): void {
    if (this.droppedWarned.has(event.offset)) return;
    if (this.droppedWarned.size >= DROPPED_WARNINGS_KEPT) this.droppedWarned.clear();
    this.droppedWarned.add(event.offset);
    this.log.warn(
      { offset: event.offset.toString(), id: event.id, why },
      `forwarded without its headers, marked ${HEADERS_DROPPED_HEADER}: the event stays whole in the log`,
    );
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
      if (this.config.mode === 'router') await this.setupRouter(link);
      else await this.setupArchive(link);
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

  // ---- modes ------------------------------------------------------------------------------

  /**
   * Router: queue herald.ingest is bound before the archive binding is removed, so no message falls
   * between the two; a herald.store queue left by archive mode is unbound, drained into the log
   * (those events were delivered already: not forwarded again) and deleted once empty.
   */
  private async setupRouter(link: Link): Promise<void> {
    const ch = link.consumeCh;
    await onBroker(() => declareRouterQueue(ch, this.config.queueType));
    await onBroker(() => removeArchiveBinding(ch));
    await this.withLock(async () => {
      if (this.head === undefined) this.head = await onStore(() => this.store.headOffset());
      // After a reconnect the confirmed offset in memory is newer than the saved checkpoint.
      this.setForwarding(this.dispatched ?? (await onStore(() => readCheckpoint(this.store))));
      // Stored but not yet forwarded (a crash or a lost connection between store and forward).
      if (this.dispatched !== undefined) await (await this.forwardUpTo(link, this.head, [])).confirmed;
    });
    if (await this.queueExists(link.conn, ARCHIVE_QUEUE)) {
      await onBroker(() => ch.unbindQueue(ARCHIVE_QUEUE, EVENTS_EXCHANGE, ALL));
      const saved = this.dispatched;
      this.setForwarding(undefined); // drained events were delivered by the archive binding
      const n = await this.drain(link, ARCHIVE_QUEUE);
      await this.withLock(async () => {
        this.setForwarding(saved === undefined || n > 0 ? this.head : saved);
      });
      await this.deleteIfEmpty(link, ARCHIVE_QUEUE, n);
    }
    await this.withLock(async () => {
      if (this.dispatched === undefined) this.setForwarding(this.head);
      await this.persistCheckpoint(true);
    });
  }

  /**
   * Archive: herald.store is bound, then the exchange-to-exchange binding added; a herald.ingest
   * queue left by router mode is unbound, drained with router semantics (stored, then forwarded
   * with offsets, since nothing delivered them yet) and deleted once empty. Messages published in
   * the instant between binding and unbinding may be delivered twice (at least once). Then the
   * router checkpoint is cleared.
   */
  private async setupArchive(link: Link): Promise<void> {
    const ch = link.consumeCh;
    await onBroker(() => declareArchive(ch, this.config.queueType));
    const hasRouterQueue = await this.queueExists(link.conn, ROUTER_QUEUE);
    await this.withLock(async () => {
      if (this.head === undefined) this.head = await onStore(() => this.store.headOffset());
      this.setForwarding(await onStore(() => readCheckpoint(this.store)));
      if (this.dispatched !== undefined) await (await this.forwardUpTo(link, this.head, [])).confirmed;
      else if (hasRouterQueue) this.setForwarding(this.head);
    });
    if (hasRouterQueue) {
      await onBroker(() => ch.unbindQueue(ROUTER_QUEUE, INGEST_EXCHANGE, ALL));
      const n = await this.drain(link, ROUTER_QUEUE);
      await this.deleteIfEmpty(link, ROUTER_QUEUE, n);
    }
    await this.withLock(async () => {
      this.setForwarding(undefined);
      await this.checkpointing; // a write in flight must not land after the clearing below
      this.persistedDispatched = undefined;
      await onStore(() => this.store.setState(DISPATCHED_KEY, null));
    });
  }

  private async queueExists(conn: ChannelModel, queue: string): Promise<boolean> {
    // A passive declare of a missing queue closes the channel: use a throwaway one.
    const ch = await onBroker(() => conn.createChannel());
    ch.on('error', () => undefined);
    try {
      await ch.checkQueue(queue);
      return true;
    } catch {
      return false;
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  private async deleteIfEmpty(link: Link, queue: string, drained: number): Promise<void> {
    const ch = await onBroker(() => link.conn.createChannel());
    ch.on('error', () => undefined);
    try {
      await ch.deleteQueue(queue, { ifEmpty: true, ifUnused: true });
      this.log.info({ queue, drained }, 'moved the other mode’s queue into the log and deleted it');
    } catch (err) {
      this.log.warn(
        { queue, err: errText(err) },
        'could not delete the other mode’s queue (not empty or in use); will drain it on next start',
      );
    } finally {
      await ch.close().catch(() => undefined);
    }
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
    await this.lastAck;
    if (this.link) this.flushAck(this.link);
  }

  /**
   * Acknowledges a stored batch once its forwards are confirmed (router mode; at once otherwise),
   * coalesced with the batches after it for up to ACK_WINDOW_MS (`now`: at once). These run in
   * batch order: confirms arrive in publish order on the one channel. When a confirm fails the link
   * is dropped: the reconnect forwards again from the confirmed checkpoint and RabbitMQ redelivers
   * what was not acknowledged (at least once, never a gap).
   */
  private async ackWhenConfirmed(link: Link, batch: Message[], confirmed: Promise<void>, now = false): Promise<void> {
    try {
      await confirmed;
    } catch (err) {
      this.log.warn({ err: errText(err) }, `a forward to ${EVENTS_EXCHANGE} was not confirmed; reconnecting to forward again`);
      this.connectionLost(link, 'forward not confirmed');
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
   * Stores one batch and, in router mode, publishes its forwards. Retries with backoff until it
   * succeeds, the connection it came on is gone (then RabbitMQ redelivers it), or the hub is
   * stopping and the grace ran out (both: false). Resolves with what the batch's acknowledgement
   * waits for: the confirms of everything forwarded so far.
   *
   * A message that is not an event, whose user_id senderCheck refuses, or an event the store
   * refuses for its data, becomes a dead letter and the rest of the batch goes on; only a store that is unavailable (or RabbitMQ) makes
   * the batch wait. Each step is done once: a retry resumes where the batch stopped.
   */
  private async processBatch(link: Link, batch: Message[]): Promise<Confirmation | false> {
    const run: AppendRun = { chunks: [], stored: [] };
    const events: HeraldEvent[] = [];
    const received: Message[] = [];
    const dead: DeadDelivery[] = [];
    const now = Date.now();
    for (const msg of batch) {
      try {
        const event = fromAmqp(
          { routingKey: msg.fields.routingKey, content: msg.content, properties: msg.properties },
          { maxBytes: this.config.maxEventBytes, now },
        );
        this.checkSender(msg, event.sender);
        this.inspect?.(event, msg.properties.userId);
        events.push(event);
        received.push(msg);
      } catch (err) {
        dead.push({ pending: messageDeadLetter(msg, err, now), settled: false, published: false });
      }
    }
    if (events.length > 0) run.chunks.push({ events, received });
    let appended = false;
    let delay = 50;
    let failing: 'store' | 'rabbitmq' | undefined;
    for (;;) {
      if (link.gen !== this.gen) return false;
      try {
        if (!appended) {
          await this.append(run, dead, now);
          appended = true;
          if (KILL_AFTER_APPEND > 0 && this.counters.batches >= KILL_AFTER_APPEND) process.kill(process.pid, 'SIGKILL');
        }
        await this.deliverDead(link, dead);
        let confirmation: Confirmation = { confirmed: Promise.resolve() };
        if (this.published !== undefined && this.head !== undefined) confirmation = await this.forwardUpTo(link, this.head, run.stored);
        if (failing) this.log.info({ side: failing }, 'ingest recovered; batch stored');
        this.storeHealthy = true;
        return confirmation;
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
        if (this.stopping && Date.now() - this.stoppingSince > STOP_GRACE_MS) return false;
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
        if (side === 'store') await this.store.ping().catch(() => undefined);
      }
    }
  }

  /** Throws a ValidationError (INVALID_EVENT) with senderCheck's reason when it refuses the message's user_id. */
  private checkSender(msg: Message, sender: string): void {
    const userId: unknown = msg.properties.userId;
    if (this.senderCheck === undefined || typeof userId !== 'string' || userId === '') return;
    const refused = this.senderCheck(userId, sender);
    if (refused !== undefined) throw new ValidationError(ErrorCodes.INVALID_EVENT, refused, { details: { userId, sender } });
  }

  /** True when the store answers: a TypeError from a driver is the data's fault only if it does. */
  private async storeAnswers(): Promise<boolean> {
    return this.store.ping().then(
      () => true,
      () => false,
    );
  }

  /**
   * Appends what is left of `run`, in order, moving the stored events to `run.stored`. The common
   * case is one append of the whole batch. When the store refuses a run of events for their data
   * (storeFailure: refused), the run is split in two and each half appended on its own, down to
   * the single events it refuses, which become dead letters (added to `dead`, built from the event
   * and the reason). Throws a StepError('store') when the store is unavailable; what was stored
   * so far stays in `run`, so the retry goes on from there.
   */
  private async append(run: AppendRun, dead: DeadDelivery[], at: number): Promise<void> {
    while (run.chunks.length > 0) {
      const chunk = run.chunks[0] as AppendRun['chunks'][number];
      let result: AppendResult;
      try {
        const started = performance.now();
        result = await this.store.append(chunk.events);
        this.metrics?.appended((performance.now() - started) / 1000, chunk.events.length);
      } catch (err) {
        if (storeFailure(err) === 'unavailable') throw new StepError('store', err);
        if (chunk.events.length > 1) {
          const mid = chunk.events.length >> 1;
          run.chunks.splice(
            0,
            1,
            { events: chunk.events.slice(0, mid), received: chunk.received.slice(0, mid) },
            { events: chunk.events.slice(mid), received: chunk.received.slice(mid) },
          );
          continue;
        }
        if (isEncodingFailure(err) && !(await this.storeAnswers())) throw new StepError('store', err);
        const event = chunk.events[0] as HeraldEvent;
        const msg = chunk.received[0] as Message;
        const refused = new HeraldError(ErrorCodes.INVALID_EVENT, `the store refused the event: ${errText(err)}`, { cause: err });
        const from = { exchange: msg.fields.exchange, routingKey: msg.fields.routingKey };
        dead.push({ pending: eventDeadLetter(event, refused, from, at), settled: false, published: false });
        run.chunks.shift();
        continue;
      }
      run.chunks.shift();
      this.counters.batches++;
      this.counters.stored += result.stored.length;
      if (result.stored.length > 0) this.metrics?.stored(result.stored);
      this.counters.duplicates += result.duplicates.length;
      for (const e of result.stored) run.stored.push(e);
      const last = result.stored[result.stored.length - 1];
      if (last && (this.head === undefined || last.offset > this.head)) this.head = last.offset;
    }
  }

  /**
   * Writes the batch's dead letters that are not written yet, then publishes those not yet on
   * `herald.dead`. A dead letter the store refuses even sanitized is logged and published with
   * that reason, so nothing waits on it. Throws a StepError when the store is unavailable or
   * RabbitMQ fails (the batch is retried from the step that failed).
   */
  private async deliverDead(link: Link, dead: DeadDelivery[]): Promise<void> {
    if (dead.length === 0) return;
    const toStore = dead.filter((d) => !d.settled);
    if (toStore.length > 0) await this.storeDead(toStore);
    const toPublish = dead.filter((d) => !d.published);
    if (toPublish.length > 0) await onBroker(() => Promise.all(toPublish.map((d) => this.publishDead(link, d))));
  }

  /** One INSERT for the lot; when the store refuses it for its data, halves, down to the one it refuses. */
  private async storeDead(items: DeadDelivery[]): Promise<void> {
    try {
      await this.store.addDeadLetters(items.map((d) => d.pending.letter));
      for (const d of items) this.deadSettled(d);
    } catch (err) {
      if (storeFailure(err) === 'unavailable') throw new StepError('store', err);
      if (items.length > 1) {
        const mid = items.length >> 1;
        await this.storeDead(items.slice(0, mid));
        await this.storeDead(items.slice(mid));
        return;
      }
      if (isEncodingFailure(err) && !(await this.storeAnswers())) throw new StepError('store', err);
      const d = items[0] as DeadDelivery;
      d.notStored = errText(err);
      this.log.error(
        { reason: d.pending.letter.reason, messageId: d.pending.letter.messageId, err: d.notStored },
        `the store refused a dead letter: it goes to ${DEAD_EXCHANGE} only`,
      );
      this.deadSettled(d);
    }
  }

  private deadSettled(d: DeadDelivery): void {
    d.settled = true;
    this.counters.dead++;
    const l = d.pending.letter;
    this.metrics?.deadLetter(l.code);
    this.log.warn({ reason: l.reason, code: l.code, routingKey: l.routingKey, messageId: l.messageId }, 'dead letter');
  }

  /**
   * Publishes one dead letter to `herald.dead` and resolves when RabbitMQ confirmed it. The full
   * form (deadLetterPublish) is measured so that amqplib takes it; should it throw all the same, the
   * minimal form goes; should that throw too, the dead letter is only in the store (logged).
   * Rejects on a nack or a closed channel.
   */
  private publishDead(link: Link, d: DeadDelivery): Promise<void> {
    const forms: DeadLetterPublish[] = deadLetterForms(d.pending, d.notStored, amqpUser(this.config.amqpUrl));
    for (const form of forms) {
      let settle: ((err: unknown) => void) | undefined;
      const confirmed = new Promise<void>((resolve, reject) => {
        settle = (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve());
      });
      try {
        link.pubCh.publish(DEAD_EXCHANGE, form.routingKey, form.content, form.options, settle);
      } catch (err) {
        if (!isEncodingError(err)) return Promise.reject(err);
        this.log.warn({ messageId: d.pending.letter.messageId, err: errText(err) }, `a dead letter would not encode for ${DEAD_EXCHANGE}`);
        continue;
      }
      if (form.headersDropped)
        this.log.warn(
          { messageId: d.pending.letter.messageId },
          `dead letter published to ${DEAD_EXCHANGE} without its original headers, which RabbitMQ cannot take again (they are in dead_letters)`,
        );
      return confirmed.then(() => {
        d.published = true;
      });
    }
    this.log.error(
      { messageId: d.pending.letter.messageId },
      `a dead letter cannot be published to ${DEAD_EXCHANGE}: it is in dead_letters only`,
    );
    d.published = true;
    return Promise.resolve();
  }

  /**
   * Router: forwarding starts (or, with undefined, stops) after `offset`: the confirmed and the
   * published positions both move there, and confirms of an earlier link no longer count.
   */
  private setForwarding(offset: bigint | undefined): void {
    this.dispatched = offset;
    this.published = offset;
    this.confirmedTail = Promise.resolve();
  }

  /**
   * Router: publishes every stored event above what was published, up to `head`, to herald.events
   * (through `dispatch` when given), in offset order, each with x-herald-offset. `fresh` (the batch
   * just stored) is used as is when it starts right after; otherwise the log is read. Resolves once
   * published, with a promise that settles when everything published so far on this link is
   * confirmed (the confirmed checkpoint has advanced by then) or rejects when something was not.
   */
  private async forwardUpTo(link: Link, head: bigint, fresh: readonly StoredEvent[]): Promise<Confirmation> {
    let published = this.published;
    if (published === undefined) return { confirmed: Promise.resolve() };
    while (published < head) {
      let events: readonly StoredEvent[];
      if (fresh.length > 0 && fresh[0]?.offset === published + 1n) {
        events = fresh;
        fresh = [];
      } else {
        const from = published;
        events = await onStore(() => this.store.query({ after: from, upTo: head, limit: 1000, maxBytes: READ_MAX_BYTES }));
        if (events.length === 0) throw new StepError('store', new Error(`the log has no events after offset ${from} up to ${head}`));
      }
      const dispatch = this.dispatch;
      const run = events;
      const { confirmed } = await onBroker(() => (dispatch ? dispatch(run) : { confirmed: this.publishEvents(link, run) }));
      if (link.gen !== this.gen) throw new StepError('rabbitmq', new Error('connection lost while forwarding'));
      published = (events[events.length - 1] as StoredEvent).offset;
      this.published = published;
      const upTo = published;
      const n = events.length;
      // Confirms come in publish order on the one channel, so the tail settles in order too.
      this.confirmedTail = this.confirmedTail
        .then(() => confirmed)
        .then(() => {
          if (link.gen !== this.gen) return;
          if (this.dispatched === undefined || upTo > this.dispatched) this.dispatched = upTo;
          this.counters.forwarded += n;
        });
      this.confirmedTail.catch(() => undefined);
    }
    await this.persistCheckpoint(false);
    return { confirmed: this.confirmedTail };
  }

  /**
   * Writes the router checkpoint now and then (at most every 250 ms), off the forwarding path: a
   * batch never waits for it, and a lagging checkpoint only means forwarding again after a crash.
   * `force` (start, stop) writes now and resolves when written. One write at a time, in order.
   */
  private persistCheckpoint(force: boolean): Promise<void> {
    if (!force && (this.checkpointing !== undefined || Date.now() - this.lastCheckpointAt < CHECKPOINT_EVERY_MS)) return Promise.resolve();
    this.lastCheckpointAt = Date.now();
    const run = (this.checkpointing ?? Promise.resolve()).then(() => this.writeCheckpoint());
    this.checkpointing = run;
    void run.then(() => {
      if (this.checkpointing === run) this.checkpointing = undefined;
    });
    return force ? run : Promise.resolve();
  }

  /** Never rejects: a failed write is logged and retried with the next one. */
  private async writeCheckpoint(): Promise<void> {
    const d = this.dispatched;
    if (d === undefined || d === this.persistedDispatched) return;
    try {
      await this.store.setState(DISPATCHED_KEY, { offset: d.toString() });
      this.persistedDispatched = d;
    } catch (err) {
      this.log.warn({ err: errText(err) }, 'could not write the router checkpoint; will retry');
    }
  }
}

/**
 * Connects once to RabbitMQ and closes again, so a hub that will wait as a standby still reports a
 * wrong or unreachable broker at start. Rejects with the same one-line UNAVAILABLE error as start().
 */
export async function probeAmqp(url: string): Promise<void> {
  try {
    const conn = await connect(url, { noDelay: true, timeout: 10_000 });
    await conn.close();
  } catch (err) {
    throw unreachable(url, err);
  }
}

/** The one line a user reads when RabbitMQ cannot be reached at start (exported for its unit test). */
export function unreachable(url: string, err: unknown): HeraldError {
  const u = new URL(url);
  const where = `${u.protocol}//${u.hostname}:${u.port || (u.protocol === 'amqps:' ? 5671 : 5672)}${u.pathname.length > 1 ? u.pathname : ''}`;
  const text = errText(err);
  // By the AMQP reply code (amqplib's numeric `code`) or its name, never by digits anywhere in the
  // text: "connect ECONNREFUSED 127.0.0.1:40649" holds a 406 too.
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === 404 || code === 406 || /\b(PRECONDITION_FAILED|NOT_FOUND)\b/.test(text)) {
    return new HeraldError(ErrorCodes.UNAVAILABLE, `RabbitMQ at ${where} refused Herald's topology: ${text}`, { cause: err });
  }
  let hint = 'start it with `rabbitmq-server -detached` or set HERALD_AMQP_URL';
  if (code === 403 || /\bACCESS_REFUSED\b|auth/i.test(text)) hint = 'check the user and password in HERALD_AMQP_URL';
  else if (code === 530 || /\bNOT_ALLOWED\b|vhost/i.test(text)) hint = 'check that the vhost exists and the user may use it';
  const reason = code ?? text;
  return new HeraldError(ErrorCodes.UNAVAILABLE, `cannot reach RabbitMQ at ${where} (${String(reason)}): ${hint}`, { cause: err });
}
