import { DEAD_EXCHANGE, DEAD_QUEUE, DEAD_STORE_QUEUE, HeraldError, type QueueType } from '@herald/core';
import { type Channel, type ChannelModel, connect, type Message } from 'amqplib';
import type { Logger } from 'pino';
import { amqpUser } from '../ingest/dead-letters.ts';
import { storeFailure } from '../ingest/store-errors.ts';
import { declareQueue } from '../ingest/topology.ts';
import type { DeadLetterStore, ReceivedDeadLetter } from '../store/index.ts';
import { keptByHub, receivedDeadLetter } from './received.ts';

/** Unacknowledged messages RabbitMQ hands the intake at most: bounds what it holds in memory. */
export const INTAKE_PREFETCH = 64;
/** Bodies one INSERT carries at most (a batch past it is written in several statements, one transaction each). */
const STATEMENT_BYTES = 4 * 1024 * 1024;
const RECONNECT_MAX_MS = 30_000;
const RETRY_MAX_MS = 5_000;
/** Bytes `herald.dead.store` holds at most (`x-max-length-bytes`); past them RabbitMQ drops the oldest. */
export const DEAD_STORE_MAX_BYTES = 1024 ** 3;
/** How herald.dead.store is declared besides its type. */
const STORE_QUEUE_ARGS = {
  'x-single-active-consumer': true,
  'x-max-length-bytes': DEAD_STORE_MAX_BYTES,
  'x-overflow': 'drop-head',
} as const;
/** Subscribers' dead letters kept at most, by default (HERALD_DEAD_LETTERS_MAX). */
export const DEFAULT_DEAD_LETTERS_MAX = 100_000;
/** A letter a concurrent write kept first (the store handles its own keys): a duplicate, not an outage. */
const UNIQUE_VIOLATION = '23505';

export interface DeadLetterIntakeOptions {
  readonly amqpUrl: string;
  readonly store: DeadLetterStore;
  readonly logger: Logger;
  /** The RabbitMQ type of the queue (HERALD_QUEUE_TYPE). Default classic. */
  readonly queueType?: QueueType | undefined;
  /**
   * Subscribers' dead letters kept at most (HERALD_DEAD_LETTERS_MAX): past them the oldest are
   * deleted, every 1 % of the bound (at most 1,000) kept since the last time. Default 100,000.
   */
  readonly maxKept?: number | undefined;
}

/** What the intake did since it started. */
export interface DeadLetterIntakeStats {
  /** Dead letters written to the table. */
  kept: number;
  /** Messages already kept: the hub's own (x-herald-dead-stored), or redelivered ones whose key was kept. */
  skipped: number;
  /** Messages the store refused even sanitized (logged; they stay in the herald.dead queue). */
  refused: number;
  /** The oldest subscribers' dead letters deleted to stay within maxKept. */
  purged: number;
}

/**
 * Keeps the dead letters that reach `herald.dead`, whoever sent them, in the dead letters table:
 * consumes the durable queue `herald.dead.store` (bound to herald.dead with `#`, single active
 * consumer, so one hub at a time takes it, another one on standby; at most DEAD_STORE_MAX_BYTES,
 * the oldest dropped past them). Each batch of deliveries is written through the store in one
 * statement (more past STATEMENT_BYTES), then acknowledged with one multiple ack. The hub's own
 * dead letters carry x-herald-dead-stored under the hub's user_id (hubMark) and are acknowledged
 * unwritten; every other message is kept sanitized (receivedDeadLetter, its body cut at
 * MAX_KEPT_BODY_BYTES) under a key made from it, so a redelivery is kept once (a unique violation
 * counts as such a duplicate). Past `maxKept` subscribers' dead letters the oldest are deleted.
 *
 * Failure: while the store is unavailable the batch is retried with backoff and nothing is
 * acknowledged; a message the store refuses even sanitized is logged and acknowledged (its copy
 * stays in the herald.dead queue); no message stops the intake. A lost connection reconnects with
 * backoff, forever, and RabbitMQ redelivers what was not acknowledged.
 */
export interface DeadLetterIntake {
  /** Starts consuming in the background; resolves at once. */
  start(): void;
  /** Stops consuming, finishes the batch in flight (its ack), closes the connection. Idempotent. */
  stop(): Promise<void>;
  /** True while a consumer is registered on the queue. */
  isConsuming(): boolean;
  stats(): DeadLetterIntakeStats;
}

export function createDeadLetterIntake(options: DeadLetterIntakeOptions): DeadLetterIntake {
  return new Intake(options);
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

interface Link {
  readonly conn: ChannelModel;
  readonly ch: Channel;
  /** Set when the connection or channel closed: its deliveries can no longer be acknowledged. */
  closed: boolean;
  /** Ends the link as lost (nothing more is acknowledged on it). */
  wake: () => void;
  /** Ends the link for a stop (the batch in flight is still acknowledged). */
  stop: () => void;
}

class Intake implements DeadLetterIntake {
  private readonly log: Logger;
  private link: Link | undefined;
  private pending: Message[] = [];
  private running: Promise<void> | undefined;
  private stopping = false;
  private consuming = false;
  /** A consumer was registered since the last connection failure. */
  private consumed = false;
  private flushing: Promise<void> = Promise.resolve();
  private scheduled = false;
  private readonly counters: DeadLetterIntakeStats = { kept: 0, skipped: 0, refused: 0, purged: 0 };
  /** The hub's AMQP user: the user_id its own dead letters carry. */
  private readonly hubUser: string;
  private readonly maxKept: number;
  /** Letters kept between two trims of the table. */
  private readonly trimEvery: number;
  /** Kept since the last trim; starts full, so the first letter kept trims what an earlier run left. */
  private keptSinceTrim: number;
  private warnedArgs = false;

  constructor(private readonly options: DeadLetterIntakeOptions) {
    this.log = options.logger;
    this.hubUser = amqpUser(options.amqpUrl);
    this.maxKept = options.maxKept ?? DEFAULT_DEAD_LETTERS_MAX;
    this.trimEvery = Math.max(1, Math.min(1000, Math.floor(this.maxKept / 100)));
    this.keptSinceTrim = this.trimEvery;
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.link?.stop();
    await this.running;
  }

  isConsuming(): boolean {
    return this.consuming;
  }

  stats(): DeadLetterIntakeStats {
    return { ...this.counters };
  }

  /** Connects, consumes until the link closes, reconnects with backoff; until stop(). */
  private async run(): Promise<void> {
    let delay = 500;
    let warned = false;
    while (!this.stopping) {
      try {
        await this.consume();
        delay = 500;
        warned = false;
      } catch (err) {
        if (this.stopping) break;
        if (this.consumed) {
          // It was consuming: a new outage, reported once more and retried soon.
          this.consumed = false;
          delay = 500;
          warned = false;
        }
        if (!warned) this.log.warn({ err: errText(err) }, `cannot consume ${DEAD_STORE_QUEUE}; retrying`);
        warned = true;
        await sleep(delay);
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      }
    }
  }

  /** One connection's life: declare, consume, and return when it closes (or the intake stops). */
  private async consume(): Promise<void> {
    const conn = await connect(this.options.amqpUrl, { noDelay: true });
    conn.on('error', () => undefined);
    let wake: () => void = () => undefined;
    const ended = new Promise<void>((resolve) => {
      wake = resolve;
    });
    let link: Link | undefined;
    const lost = () => {
      if (link) link.closed = true;
      wake();
    };
    conn.on('close', lost);
    try {
      await this.declare(conn);
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      ch.on('close', lost);
      await ch.bindQueue(DEAD_STORE_QUEUE, DEAD_EXCHANGE, '#');
      await ch.prefetch(INTAKE_PREFETCH);
      link = { conn, ch, closed: false, wake: lost, stop: wake };
      this.link = link;
      this.pending = [];
      const current = link;
      const { consumerTag } = await ch.consume(DEAD_STORE_QUEUE, (msg) => this.onMessage(current, msg), { noAck: false });
      this.consuming = true;
      this.consumed = true;
      this.log.info({ queue: DEAD_STORE_QUEUE }, `keeping the dead letters of ${DEAD_EXCHANGE}`);
      if (this.stopping) wake();
      await ended;
      // Stopping: no more deliveries; the batch in flight still finishes and is acknowledged.
      if (!link.closed) await ch.cancel(consumerTag).catch(() => undefined);
    } finally {
      this.consuming = false;
      await this.flushing;
      if (link) link.closed = true;
      this.link = undefined;
      await conn.close().catch(() => undefined);
    }
    if (!this.stopping) throw new Error('the connection closed');
  }

  /**
   * Declares herald.dead and herald.dead.store, on a channel of its own. A queue an older hub
   * declared with other arguments (without the byte bound) makes RabbitMQ answer
   * PRECONDITION_FAILED, and RabbitMQ cannot change a queue's arguments: it is used as it is, once
   * it is known to exist, with a warning; a queue of the other type still fails (queueTypeConflict).
   */
  private async declare(conn: ChannelModel): Promise<void> {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    try {
      await ch.assertExchange(DEAD_EXCHANGE, 'topic', { durable: true });
      await declareQueue(ch, DEAD_STORE_QUEUE, this.options.queueType ?? 'classic', STORE_QUEUE_ARGS);
    } catch (err) {
      if (err instanceof HeraldError || !/inequivalent arg '[^']*' for queue/.test(errText(err))) throw err;
      const check = await conn.createChannel();
      check.on('error', () => undefined);
      await check.checkQueue(DEAD_STORE_QUEUE);
      await check.close().catch(() => undefined);
      if (!this.warnedArgs)
        this.log.warn(
          { queue: DEAD_STORE_QUEUE, err: errText(err) },
          `${DEAD_STORE_QUEUE} exists with other arguments: used as it is, without the bound of ${DEAD_STORE_MAX_BYTES} bytes ` +
            '(delete it when empty for the hub to declare it again, or set a max-length-bytes policy)',
        );
      this.warnedArgs = true;
      return;
    }
    await ch.close().catch(() => undefined);
  }

  private onMessage(link: Link, msg: Message | null): void {
    if (msg === null) {
      // RabbitMQ cancelled the consumer (the queue was deleted): reconnect and declare it again.
      this.log.warn(`RabbitMQ cancelled the consumer of ${DEAD_STORE_QUEUE}; declaring it again`);
      link.wake();
      return;
    }
    if (link !== this.link || link.closed) return;
    this.pending.push(msg);
    if (this.scheduled) return;
    this.scheduled = true;
    // Deliveries read from one socket chunk arrive in one turn: the next turn takes them as a batch.
    // What is pending belongs to the current link (a new link starts with none).
    setImmediate(() => {
      this.scheduled = false;
      const current = this.link;
      if (current === undefined) return;
      this.flushing = this.flushing
        .then(() => this.flush(current))
        .catch((err) => {
          // Not a failure of the store (write retries those): start over on a new connection, and
          // RabbitMQ redelivers the batch, which the keys keep once.
          this.log.error({ err: errText(err) }, `keeping dead letters from ${DEAD_EXCHANGE} failed; reconnecting`);
          current.wake();
        });
    });
  }

  /** Writes what is pending on `link`, then acknowledges it with one multiple ack. */
  private async flush(link: Link): Promise<void> {
    if (link !== this.link || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const letters: ReceivedDeadLetter[] = [];
    const keys = new Set<string>();
    let skipped = 0;
    for (const msg of batch) {
      if (keptByHub(msg, this.hubUser)) {
        skipped++;
        continue;
      }
      const letter = receivedDeadLetter(msg, Date.now(), this.hubUser);
      if (keys.has(letter.dedupeKey)) {
        skipped++;
        continue;
      }
      keys.add(letter.dedupeKey);
      letters.push(letter);
    }
    let kept = 0;
    for (const chunk of chunks(letters)) {
      const n = await this.write(link, chunk);
      if (n === undefined) return; // the link closed: RabbitMQ redelivers the batch
      kept += n.kept;
      skipped += chunk.length - n.kept - n.refused;
    }
    if (link.closed) return;
    try {
      link.ch.ack(batch[batch.length - 1] as Message, true);
    } catch {
      // The channel is closing: RabbitMQ redelivers, and the keys keep each message once.
      return;
    }
    this.counters.kept += kept;
    this.counters.skipped += skipped;
    if (kept > 0) this.log.info({ kept, skipped }, 'dead letters from herald.dead kept');
    this.keptSinceTrim += kept;
    if (kept > 0 && this.keptSinceTrim >= this.trimEvery) await this.trim();
  }

  /** Deletes the oldest subscribers' dead letters past maxKept. A failure is logged: the next trim catches up. */
  private async trim(): Promise<void> {
    try {
      const purged = await this.options.store.trimReceived(this.maxKept);
      this.keptSinceTrim = 0;
      this.counters.purged += purged;
      if (purged > 0)
        this.log.info({ purged, max: this.maxKept }, "the oldest subscribers' dead letters deleted (HERALD_DEAD_LETTERS_MAX)");
    } catch (err) {
      this.log.warn({ err: errText(err) }, "cannot delete the oldest subscribers' dead letters; trying again after the next");
    }
  }

  /**
   * Writes `letters`, retrying while the store is unavailable (undefined when the link closes
   * meanwhile or the intake stops); a statement the store refuses for its data is halved down to
   * the letters it refuses, which are logged and counted; one that breaks a unique key likewise,
   * down to the letters kept already (skipped).
   */
  private async write(link: Link, letters: ReceivedDeadLetter[]): Promise<{ kept: number; refused: number } | undefined> {
    let delay = 100;
    let warned = false;
    for (;;) {
      if (link.closed || this.stopping) return undefined;
      try {
        const kept = await this.options.store.addReceived(letters);
        if (warned) this.log.info('the store is back: dead letters from herald.dead kept again');
        return { kept, refused: 0 };
      } catch (err) {
        const code = (err as { code?: unknown } | null)?.code;
        if (code === UNIQUE_VIOLATION) return this.split(link, letters, err, 'duplicate');
        if (storeFailure(err) === 'refused') return this.split(link, letters, err, 'refused');
        if (!warned) this.log.error({ err: errText(err) }, 'cannot keep dead letters from herald.dead: the store failed; retrying');
        warned = true;
        await sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
    }
  }

  private async split(
    link: Link,
    letters: ReceivedDeadLetter[],
    err: unknown,
    why: 'refused' | 'duplicate',
  ): Promise<{ kept: number; refused: number } | undefined> {
    if (letters.length === 1) {
      const l = letters[0] as ReceivedDeadLetter;
      if (why === 'duplicate') return { kept: 0, refused: 0 };
      this.counters.refused++;
      this.log.error(
        { routingKey: l.routingKey, messageId: l.messageId, err: errText(err) },
        `the store refused a dead letter from ${DEAD_EXCHANGE}: it stays in the ${DEAD_QUEUE} queue only`,
      );
      return { kept: 0, refused: 1 };
    }
    const mid = letters.length >> 1;
    const a = await this.write(link, letters.slice(0, mid));
    if (a === undefined) return undefined;
    const b = await this.write(link, letters.slice(mid));
    if (b === undefined) return undefined;
    return { kept: a.kept + b.kept, refused: a.refused + b.refused };
  }
}

/** Letters in runs of at most STATEMENT_BYTES of bodies (at least one each). */
function* chunks(letters: ReceivedDeadLetter[]): Generator<ReceivedDeadLetter[]> {
  let run: ReceivedDeadLetter[] = [];
  let bytes = 0;
  for (const l of letters) {
    if (run.length > 0 && bytes + l.body.length > STATEMENT_BYTES) {
      yield run;
      run = [];
      bytes = 0;
    }
    run.push(l);
    bytes += l.body.length;
  }
  if (run.length > 0) yield run;
}
