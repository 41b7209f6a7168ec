import type { HeraldError, HeraldEvent } from '@herald/core';
import type { Logger } from 'pino';
import type { HubConfig } from '../config/index.ts';
import type { Store, StoredEvent } from '../store/types.ts';
import type { IngestOutlet } from './mode-setup.ts';

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
  /** RabbitMQ reconnects. */
  reconnects: number;
}

/** One event's answer from Ingest.append(). */
export type DirectOutcome =
  | { readonly offset: bigint; readonly duplicate: false }
  | { readonly offset: bigint | undefined; readonly duplicate: true }
  | { readonly error: HeraldError };

/**
 * The ingest pipeline: RabbitMQ → log, handing each stored run to its outlet (the dispatcher's
 * flow to `herald.events`).
 *
 * Guarantee: an ingest message is acknowledged only after the transaction that stores it (or its
 * dead letter) committed, and with an outlet only after the outlet has it out (confirmed on
 * `herald.events` or held by a pause).
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
 * acknowledged come back and the store drops the ids it already has (at least once, no gap).
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
   * is not acknowledged is redelivered to the next hub), closes.
   */
  stop(): Promise<void>;
  /**
   * Publishes an event to `herald.ingest` on the hub's confirm channel; resolves when RabbitMQ
   * confirmed it. Rejects with UNAVAILABLE while RabbitMQ is disconnected, PUBLISH_FAILED on a nack,
   * INVALID_EVENT (a ValidationError) when amqplib cannot encode the event.
   */
  publish(event: HeraldEvent): Promise<void>;
  /**
   * The direct path: stores events in the log itself (in order, in the same serial line as the
   * batches from RabbitMQ, so one transaction for the lot when the store takes it), hands what was
   * stored to the outlet, and resolves once the transaction committed, without waiting for
   * RabbitMQ: one outcome per event, in order. An event the catalog's inspection refuses, or that
   * the store refuses for its data, is refused with its reason (not dead-lettered: the caller hears
   * of it); an id the log has is a duplicate. The caller has checked that its principal may publish
   * as each sender; `producer` names it for the catalog. Rejects with UNAVAILABLE when the store is
   * unavailable, the hub is not ingesting, or it is setting up its mode after a reconnect (the
   * caller retries). When the flow has HERALD_PUBLISH_MAX_UNFORWARDED of this path's events still to
   * get out (RabbitMQ unreachable or slow), the events past the bound are answered UNAVAILABLE each,
   * in order after those stored.
   */
  append(events: readonly HeraldEvent[], producer: string | undefined): Promise<DirectOutcome[]>;
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
   * Where each newly stored run goes, in offset order (the dispatcher's flow; see IngestOutlet),
   * and what takes part in the mode switches. The ingest messages stay unacknowledged until the
   * outlet has their events out. Default: none (the log only).
   */
  outlet?: IngestOutlet | undefined;
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
  /** A dead letter, by its error code. */
  deadLetter(code: string): void;
}
