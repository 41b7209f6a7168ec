import type { HeraldEvent, SelectorInput } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import type { ExchangeStore } from './exchange-store.ts';
import type { HeldStore } from './held-store.ts';
import type { PauseStore } from './pause-store.ts';
import type { ReplayStore } from './replay-store.ts';
import type { SubscriptionStore } from './subscription-store.ts';
import type { UserStore } from './user-store.ts';

/** An event as kept in the log. */
export interface StoredEvent extends HeraldEvent {
  /** Position in the log: dense (no gaps) and increasing in commit order, from 1. */
  readonly offset: bigint;
  /** When the hub stored it, epoch ms. */
  readonly storedAt: number;
}

/** What an append did: the events newly stored (with offsets, in order) and the ids already there. */
export interface AppendResult {
  readonly stored: StoredEvent[];
  /** Ids that were in the log already, or twice in the batch: not stored again. */
  readonly duplicates: string[];
}

/** A query over the log. Results are in ascending offset order. */
export interface EventQuery {
  selector?: SelectorInput | undefined;
  /** Only offsets greater than this. */
  after?: bigint | undefined;
  /** Only offsets up to and including this. */
  upTo?: bigint | undefined;
  /** Only events whose time is at or after this (epoch ms). */
  since?: number | undefined;
  /** Only events whose time is before this (epoch ms). */
  until?: number | undefined;
  /** The last N matching events (still returned in ascending order). */
  last?: number | undefined;
  /** At most this many events. */
  limit: number;
  /**
   * Stop once the bodies reach this many bytes: an event is returned when the bodies before it
   * (in the query's order: ascending, or from the newest for `last`) add up to less. So at least
   * one event comes back whenever one matches, and the total passes the bound by at most one body.
   * A result cut by it may hold fewer than `limit` events with more to come: more may follow when
   * `limit` events came back or the bodies reached `maxBytes` (`queryMayHaveMore`). Unset, no bound
   * in bytes (and the SQL is the plain one).
   */
  maxBytes?: number | undefined;
}

/**
 * Bodies one read of the log may bring into memory (the `maxBytes` of a REST page, a catch-up or
 * replay chunk, a recovery forward): 1,000 events of the 1 MiB maximum would be a gigabyte.
 */
export const READ_MAX_BYTES = 16 * 1024 * 1024;

/**
 * A message the hub could not take as an event (or an event the store refused), kept with its
 * reason. `body` is the original bytes, whole. Everything else is a sanitized copy of what could
 * be read (ingest's dead-letters.ts, DEAD_LETTER_BOUNDS): valid UTF-8 without NUL, each text cut to
 * its bound; in `properties` byte arrays are `{ $base64, bytes, truncated? }`, the JSON is bounded
 * with the largest header values dropped first, and a `sanitized` entry names what was changed or
 * dropped. So writing one never fails for the reason its message failed.
 */
export interface DeadLetter {
  readonly reason: string;
  readonly code: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId?: string | undefined;
  readonly properties: Record<string, unknown>;
  readonly body: Buffer;
  /** Epoch ms. */
  readonly at: number;
}

/**
 * The hub's tables besides the log, one repository each, over the store's connection (`Store.sql`).
 * Each says what it keeps; every method rejects when the database fails.
 */
export interface Repositories {
  readonly pauses: PauseStore;
  readonly held: HeldStore;
  readonly replays: ReplayStore;
  readonly subscriptions: SubscriptionStore;
  readonly exchanges: ExchangeStore;
  readonly users: UserStore;
}

/**
 * The log and the hub's state, behind one interface with two drivers: `pg` (PostgreSQL server)
 * and PGlite (embedded, the default). Both run the same SQL and the same migrations.
 *
 * Failure: every method rejects when the database is unreachable; nothing is half-written (each
 * write is one transaction). The `pg` driver reconnects on the next call once the server is back.
 */
export interface Store extends Repositories {
  /** `postgres` or `embedded`. */
  readonly kind: 'postgres' | 'embedded';
  /**
   * The connection the repositories run on (on PostgreSQL the writer's pool), for the repositories
   * made by their factories (createCatalogStore, createDeadLetterStore, …) and the modules given one.
   */
  readonly sql: SqlExecutor;
  /** Applies pending migrations, in order. Idempotent. */
  migrate(): Promise<void>;
  /**
   * Takes the writer lease (one writer assigns offsets at a time). Resolves true when held; false
   * when another process holds it. Released on close or when the connection drops.
   */
  acquireWriterLease(): Promise<boolean>;
  /**
   * Stores a batch in one transaction: drops ids already in the log (and repeats in the batch),
   * assigns the next dense offsets in batch order. Needs the writer lease: without it (never taken,
   * or lost) rejects with CONFLICT. When it rejects, nothing of the batch is stored and the head
   * offset is read again on the next call, so offsets stay dense; retrying the batch is safe.
   */
  append(events: readonly HeraldEvent[]): Promise<AppendResult>;
  /**
   * How many of `n` waiting events to give one append() for the cheapest insert: on a server, the
   * largest count ≤ n whose INSERT is a prepared statement (every count up to 32, then powers of
   * two); n itself on the embedded store. Always at least 1 for n ≥ 1, never more than n.
   */
  appendBatchSize(n: number): number;
  query(q: EventQuery): Promise<StoredEvent[]>;
  getByOffset(offset: bigint): Promise<StoredEvent | undefined>;
  getById(id: string): Promise<StoredEvent | undefined>;
  /** The highest offset in the log; 0n when empty. */
  headOffset(): Promise<bigint>;
  /** Keeps messages that are not events, with their reasons. */
  addDeadLetters(letters: readonly DeadLetter[]): Promise<void>;
  listDeadLetters(limit: number): Promise<(DeadLetter & { id: bigint })[]>;
  /** Small named values of the hub's state (checkpoints), as JSON. */
  getState<T>(key: string): Promise<T | undefined>;
  setState(key: string, value: unknown): Promise<void>;
  /** Resolves when the database answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
