import { EventEmitter } from 'node:events';
import { createEvent, ErrorCodes, HeraldError, redactUrl, toAmqp } from '@herald/core';
import type pg from 'pg';
import { later } from '../connection.ts';
import { AmqpSink, type SinkMessage } from './amqp-sink.ts';
import { type NormalizedRelay, normalizeRelayOptions, type OutboxRelayOptions } from './relay-options.ts';
import { type OutboxRow, RelaySql } from './relay-sql.ts';

/** What a relay is doing: holding the lease and publishing, waiting for it, or stopped. */
export type OutboxRelayState = 'starting' | 'active' | 'standby' | 'stopped';

/** Counters of one relay since start(). */
export interface OutboxRelayStats {
  /** Rows RabbitMQ confirmed (a row re-published after a crash counts again; the log stores it once). */
  readonly published: number;
  /** Rounds that published at least one row. */
  readonly rounds: number;
  /** Rows parked by this relay. */
  readonly parked: number;
  readonly state: OutboxRelayState;
}

/** The events of a relay, to watch its progress. */
export interface OutboxRelayEvents {
  /** A round was confirmed: how many rows, and the ids in seq order. */
  published: [{ count: number; ids: readonly string[] }];
  /** A row was given up on and marked `failed_at`; the rows behind it go on. */
  parked: [{ id: string; seq: string; reason: string }];
  /** The relay took the lease (`active`), lost it or waits for it (`standby`), or stopped. */
  state: [OutboxRelayState];
}

/**
 * Publishes the rows of an outbox table to `herald.ingest`, in seq order, with publisher confirms.
 *
 * Several relays may run on one database: one holds the lease (a session advisory lock) and
 * publishes, the others stand by and take over within `standbyIntervalMs` of its session ending.
 */
export interface OutboxRelay {
  /**
   * Connects to PostgreSQL, tries the lease, then works in the background. Rejects with
   * UNAVAILABLE when the database cannot be reached at all (RabbitMQ is connected in the
   * background, with retries). Idempotent.
   */
  start(): Promise<void>;
  /** Finishes the round in flight, gives up the lease and closes both connections. Idempotent. */
  stop(): Promise<void>;
  readonly stats: OutboxRelayStats;
  on<K extends keyof OutboxRelayEvents>(event: K, listener: (...args: OutboxRelayEvents[K]) => void): this;
  off<K extends keyof OutboxRelayEvents>(event: K, listener: (...args: OutboxRelayEvents[K]) => void): this;
  /** stop(), for `await using relay = createOutboxRelay(…)`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** The relay's one PostgreSQL session: the lease, LISTEN and every statement run on it. */
interface Session {
  readonly db: pg.ClientBase;
  leader: boolean;
  dead: boolean;
  end(): Promise<void>;
}

const MAX_RETRY_MS = 30_000;
/** PostgreSQL's SQLSTATE for a missing table. */
const UNDEFINED_TABLE = '42P01';
const PURGE_EVERY_MS = 60_000;
const PURGE_ROWS = 10_000;

/** An error that means the session is gone (not one statement's failure). */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code !== 'string' || code.startsWith('08') || code === '57P01';
}

async function loadPg(): Promise<typeof pg> {
  try {
    return (await import('pg')).default;
  } catch (cause) {
    throw new HeraldError(ErrorCodes.INVALID_CONFIG, 'the outbox relay needs the pg package: npm install pg', { cause });
  }
}

class OutboxRelayImpl extends EventEmitter implements OutboxRelay {
  private readonly s: NormalizedRelay;
  private readonly sql: RelaySql;
  private sink: AmqpSink | undefined;
  private session: Session | undefined;
  private starting: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private counts = { published: 0, rounds: 0, parked: 0 };
  private current: OutboxRelayState = 'starting';
  /** Set by a NOTIFY (or stop) so a wait that starts after it returns at once. */
  private woken = false;
  private wake: (() => void) | undefined;
  /** After a refused round: publish one row at a time until one is confirmed, to find the one refused. */
  private probing = false;
  private failures = 0;
  private lastPurge = 0;

  constructor(options: OutboxRelayOptions) {
    super();
    this.s = normalizeRelayOptions(options);
    this.sql = new RelaySql(this.s.names, this.s.retentionMs);
  }

  get stats(): OutboxRelayStats {
    return { ...this.counts, state: this.current };
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  start(): Promise<void> {
    this.starting ??= (async () => {
      if (this.stopping) throw new HeraldError(ErrorCodes.CLOSED, 'outbox relay is stopped');
      this.session = await this.connect();
      this.sink = new AmqpSink(this.s, (err) => this.report(err));
      this.loop = this.run();
    })();
    return this.starting;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.signal();
      await this.starting?.catch(() => undefined);
      await this.loop;
      await this.session?.end();
      this.session = undefined;
      await this.sink?.close();
      this.setState('stopped');
    })();
    return this.stopping;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        if (this.session?.dead) await this.drop(this.session);
        this.session ??= await this.connect();
        const session = this.session;
        if (!session.leader) {
          if (!(await this.sql.tryLease(session.db))) {
            this.setState('standby');
            await this.sleep(this.s.standbyIntervalMs);
            continue;
          }
          session.leader = true;
          await this.sql.listen(session.db);
          this.setState('active');
        }
        const sink = this.sink as AmqpSink;
        if (!sink.ready) {
          await sink.waitReady(this.s.pollIntervalMs);
          continue;
        }
        await this.purge(session);
        const result = await this.round(session, sink);
        this.failures = result === 'retry' ? this.failures + 1 : 0;
        if (result === 'idle') await this.sleep(this.s.pollIntervalMs);
        else if (result === 'retry') await this.sleep(this.backoff());
      } catch (err) {
        if (this.stopping) break;
        this.report(err instanceof HeraldError ? err : this.unavailable(err));
        if (this.session && isConnectionError(err)) this.session.dead = true;
        if (this.session?.dead) await this.drop(this.session);
        this.failures++;
        await this.sleep(this.backoff());
      }
    }
  }

  /**
   * One round: the oldest pending rows, published in order; the confirmed ones marked sent. Rows
   * that break the contract are parked at once; a refusal sends the relay probing row by row, and
   * a row refused on its own counts an attempt (parked after maxAttempts).
   */
  private async round(session: Session, sink: AmqpSink): Promise<'busy' | 'idle' | 'retry'> {
    this.woken = false;
    const limit = this.probing ? 1 : this.s.batchSize;
    const rows = await this.sql.pending(session.db, limit, this.s.maxBatchBytes);
    if (rows.length === 0) return 'idle';
    const batch: OutboxRow[] = [];
    const messages: SinkMessage[] = [];
    for (const row of rows) {
      try {
        messages.push(this.message(row));
        batch.push(row);
      } catch (err) {
        await this.sql.park(session.db, row.seq, `cannot be published: ${(err as Error).message}`);
        this.parked(row, (err as Error).message);
      }
    }
    if (batch.length === 0) return 'busy';
    if (session.dead) throw this.unavailable(new Error('the database session was lost'));
    const outcomes = await sink.publish(messages);
    const sent: string[] = [];
    const ids: string[] = [];
    let refused: { row: OutboxRow; reason: string } | undefined;
    let lost = false;
    outcomes.forEach((o, i) => {
      const row = batch[i] as OutboxRow;
      if (o.ok) {
        sent.push(row.seq);
        ids.push(row.id);
      } else if (o.refused) refused ??= { row, reason: o.reason };
      else lost = true;
    });
    await this.sql.sent(session.db, sent);
    if (sent.length > 0) {
      this.counts.published += sent.length;
      this.counts.rounds++;
      this.emit('published', { count: sent.length, ids });
    }
    if (refused) {
      if (batch.length === 1) {
        if (await this.sql.refused(session.db, refused.row.seq, refused.reason, this.s.maxAttempts)) {
          this.parked(refused.row, refused.reason);
          this.probing = false;
          return 'busy';
        }
      }
      this.probing = true;
      return 'retry';
    }
    if (this.probing && sent.length > 0) this.probing = false;
    return lost ? 'retry' : 'busy';
  }

  /** The AMQP message of a row, exactly as createPublisher sends it; throws a ValidationError when the row breaks a limit. */
  private message(row: OutboxRow): SinkMessage {
    const headers = (row.headers ?? {}) as Record<string, string>;
    const event = createEvent(
      {
        sender: row.sender,
        type: row.type,
        data: row.data,
        id: row.id,
        time: Number(row.time_ms),
        contentType: row.content_type,
        subject: row.subject ?? undefined,
        correlationId: row.correlation_id ?? undefined,
        causationId: row.causation_id ?? undefined,
        headers,
      },
      { maxBytes: this.s.maxEventBytes },
    );
    return toAmqp(event, this.s.setUserId ? { userId: this.s.user } : {});
  }

  /** Forgets a session that failed: its lease went with it. */
  private async drop(session: Session): Promise<void> {
    if (this.session === session) this.session = undefined;
    if (session.leader) this.setState('standby');
    this.probing = false;
    await session.end();
  }

  /** Deletes rows sent longer than retentionMs ago, at most once a minute, in batches. */
  private async purge(session: Session): Promise<void> {
    if (this.s.retentionMs === 0 || Date.now() - this.lastPurge < Math.min(PURGE_EVERY_MS, this.s.retentionMs)) return;
    this.lastPurge = Date.now();
    while (!this.stopping && (await this.sql.purge(session.db, this.s.retentionMs, PURGE_ROWS)) === PURGE_ROWS);
  }

  private parked(row: OutboxRow, reason: string): void {
    this.counts.parked++;
    this.emit('parked', { id: row.id, seq: row.seq, reason });
  }

  /** Opens the session: a connection of its own (from the pool, or from the URL). */
  private async connect(): Promise<Session> {
    const database = this.s.database;
    let db: pg.ClientBase;
    let end: (destroy: boolean) => Promise<void>;
    try {
      if (typeof database === 'string') {
        const { Client } = await loadPg();
        const client = new Client({
          connectionString: database,
          keepAlive: true,
          connectionTimeoutMillis: 10_000,
          application_name: 'herald-outbox-relay',
        });
        client.on('error', () => undefined);
        try {
          await client.connect();
        } catch (err) {
          await client.end().catch(() => undefined);
          throw err;
        }
        db = client;
        end = () => client.end().catch(() => undefined);
      } else {
        const client = await database.connect();
        db = client;
        // Discarded, never given back: its session holds the lease and LISTENs.
        end = async () => client.release(true);
      }
    } catch (err) {
      if (err instanceof HeraldError) throw err;
      throw this.unavailable(err);
    }
    const session: Session = {
      db,
      leader: false,
      dead: false,
      end: async () => {
        session.dead = true;
        db.off('notification', onNotification);
        await end(true);
      },
    };
    const onNotification = (m: pg.Notification) => {
      if (m.channel === this.s.names.channel) this.signal();
    };
    db.on('notification', onNotification);
    db.on('error', (err) => {
      // The session's lease and LISTEN went with it: the loop opens another and tries again.
      if (!session.dead) this.report(this.unavailable(new Error(`lost the session: ${err.message}`, { cause: err })));
      session.dead = true;
      this.signal();
    });
    db.on('end', () => {
      session.dead = true;
      this.signal();
    });
    return session;
  }

  /** Waits `ms`, or less when a NOTIFY or stop() comes (also one that came since the last round). */
  private sleep(ms: number): Promise<void> {
    if (this.woken || this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = later(ms, () => {
        this.wake = undefined;
        resolve();
      });
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private signal(): void {
    this.woken = true;
    this.wake?.();
  }

  private backoff(): number {
    return Math.min(MAX_RETRY_MS, this.s.retryDelayMs * 2 ** Math.max(0, this.failures - 1));
  }

  private setState(state: OutboxRelayState): void {
    if (this.current === state) return;
    this.current = state;
    this.emit('state', state);
  }

  private unavailable(err: unknown): HeraldError {
    if ((err as { code?: unknown }).code === UNDEFINED_TABLE)
      return new HeraldError(
        ErrorCodes.INVALID_CONFIG,
        `outbox table ${this.s.names.outboxName} does not exist: run migrateOutbox() or herald outbox-relay --migrate`,
        { cause: err },
      );
    const where = typeof this.s.database === 'string' ? ` at ${redactUrl(this.s.database)}` : '';
    return new HeraldError(ErrorCodes.UNAVAILABLE, `outbox database${where}: ${(err as Error).message}`, { cause: err });
  }

  private report(err: Error): void {
    try {
      this.s.onError?.(err);
    } catch {
      // A throwing error callback must not break the relay.
    }
  }
}

/**
 * Creates a relay that publishes an outbox table's rows to `herald.ingest`; call start().
 *
 * Guarantees: every committed row is published at least once, and its event id makes the hub
 * store it once; rows are published in seq order, so the events of one key keep the order they
 * were added in (a round refused in part is the one exception: see docs/outbox.md). A row of a
 * rolled-back transaction is never seen.
 *
 * Failure and reconnect: RabbitMQ and PostgreSQL are reconnected with backoff, forever; what was
 * not confirmed stays pending and is published again (same id) once both are back. A row that
 * breaks the contract's limits is parked at once; a row RabbitMQ refuses on its own `maxAttempts`
 * times is parked; both are reported on 'parked' and skipped, so the rows behind go on. Bad
 * options throw a ValidationError (INVALID_CONFIG) at once.
 */
export function createOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  return new OutboxRelayImpl(options);
}
