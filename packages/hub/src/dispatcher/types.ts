import type { Logger } from 'pino';
import type { Pause, PauseInput, PauseLimits } from '../pauses/index.ts';
import type { Replay, ReplayInput } from '../replays/index.ts';
import type { Store, StoredEvent } from '../store/index.ts';

/**
 * Publishes events to `herald.events`, each with `x-herald-offset` (and `x-herald-replay` when
 * `replay` is given), in the order given, and resolves once RabbitMQ confirmed them all. The
 * messages are handed to the channel during the call itself (before it returns), so calls made one
 * after another publish in that order even when nobody awaits the first. Rejects when RabbitMQ nacks
 * or the channel is gone; the dispatcher then retries (at least once).
 */
export type Forward = (events: readonly StoredEvent[], options?: { replay?: string }) => Promise<void>;

/** A pause as the API shows it: with the number of held events it covers. */
export type PauseView = Pause & { readonly held: number };

/** Counters for metrics and tests. */
export interface DispatcherStats {
  /** Events given to dispatch(). */
  dispatched: number;
  /** Events forwarded live. */
  forwarded: number;
  /** Events held by a pause. */
  held: number;
  /** Held events released after their pauses ended. */
  released: number;
  /** Events sent by replays. */
  replayed: number;
  /** Pauses (the replays' own included) that still hold. */
  holding: number;
  /** Replays into the flow pending or running (they count against HERALD_MAX_REPLAYS). */
  replays: number;
}

/** What the dispatcher needs. */
export interface DispatcherOptions {
  /** Reads the log (held events on release, history on replay) and keeps pauses, held events and replays. */
  store: Pick<Store, 'query' | 'headOffset' | 'pauses' | 'held' | 'replays'>;
  forward: Forward;
  logger?: Logger | undefined;
  /** The default and maximum ttl of a pause (300 s and 24 h by default), and how many may be active (1000). */
  limits?: PauseLimits | undefined;
  /** Events per release or replay step, read from the log and forwarded at once. Default 2000. */
  chunkSize?: number | undefined;
}

/**
 * The single serialized path from the log to `herald.events` in router mode (DESIGN.md §2,
 * guarantees 3 and 4). Live dispatch, pause changes, release steps and replay steps run one at a
 * time on one queue, so order holds: a resumed pause's held events go out, in offset order, before
 * any newer live event of that flow; a replay's events go out before the live events of its
 * selector that arrived meanwhile (its own pause holds them).
 *
 * Releases and replays advance one chunk per step, and live batches queued meanwhile run between
 * steps, so a long release does not stall other flows: the ended pause keeps holding its selector's
 * live events until everything it held is out.
 *
 * Failure: dispatch() rejects when the store or RabbitMQ fails (the caller retries the batch; an
 * offset held twice is recorded once, a forward may repeat: at least once). A failing release or
 * replay step is retried with backoff (100 ms doubling to 5 s), forever, and logged.
 *
 * Restart: pauses, held events and replays are in the database. start() ends the pauses that
 * expired meanwhile, releases what no pause holds any more, and continues unfinished replays from
 * their last confirmed chunk.
 */
export interface Dispatcher {
  /** Loads pauses and replays and starts the background work. Idempotent; dispatch() calls it if needed. */
  start(): Promise<void>;
  /**
   * Forwards a batch of newly stored events (ascending offsets), holding those an active pause
   * matches. Resolves when the held ones are recorded and the others confirmed: all of them count
   * as dispatched for the checkpoint.
   */
  dispatch(events: readonly StoredEvent[]): Promise<void>;
  /**
   * dispatch() in two steps, so the caller can store the next batch while RabbitMQ confirms this
   * one: resolves once the events are published (in order, before anything dispatched later) and
   * the held ones recorded; `confirmed` resolves once RabbitMQ confirmed the published ones, and
   * rejects when it did not (the caller then forwards again from its checkpoint: at least once).
   */
  publish(events: readonly StoredEvent[]): Promise<{ confirmed: Promise<void> }>;
  /**
   * Creates a pause; live events it matches are held from the next dispatch on. Throws a
   * ValidationError on bad input, LIMIT_EXCEEDED when `limits.maxActive` user pauses are active.
   */
  createPause(input: PauseInput): Promise<PauseView>;
  /** User pauses that still hold (active, or ended with a release in progress), oldest first. */
  listPauses(): Promise<PauseView[]>;
  getPause(id: string): Promise<PauseView | undefined>;
  /**
   * Ends a pause (resume); its held events are released in the background, in offset order, except
   * those another active pause matches. Idempotent on an ended pause. Throws NOT_FOUND.
   */
  resume(id: string): Promise<PauseView>;
  /**
   * Creates a replay into the flow; it runs in the background. It re-sends only released events:
   * those of its range a pause still holds are left out (they go out once, live, on release).
   * Throws a ValidationError on bad input.
   */
  createReplay(input: ReplayInput): Promise<Replay>;
  getReplay(id: string): Promise<Replay | undefined>;
  /**
   * Cancels a replay into the flow: once the step in progress is out (its chunk confirmed), no more
   * of it is sent; it is `cancelled`, its pause ends (the live events it held go out, in order) and
   * it no longer counts as active. Resolves with the replay as it stands: a finished one (done,
   * failed, cancelled) is left as it is. Undefined for an unknown id; a replay into a subscription is
   * returned untouched (the subscription manager cancels those).
   */
  cancelReplay(id: string): Promise<Replay | undefined>;
  /** Resolves when no release or replay is pending (for tests and the bench). */
  idle(): Promise<void>;
  stats(): DispatcherStats;
  /** Finishes the step in progress and stops; later calls reject with CLOSED. State stays in the database. */
  stop(): Promise<void>;
}
