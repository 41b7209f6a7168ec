import type { Selector, SelectorInput } from '@herald/core';
import type { ReplayFrom, ReplayTo } from '../replays/index.ts';
import type { StoredEvent } from '../store/types.ts';

/**
 * Where a new subscription starts (DESIGN.md §5): `new` = after the head of the log when it is
 * created; `earliest` = the first event; an offset (the first offset delivered); an event time
 * (the first event at or after it); the last N matching events. Resuming an existing
 * subscription ignores `start`: it continues after its acknowledged offset.
 */
export type StartPosition = 'new' | 'earliest' | { offset: bigint } | { time: number } | { last: number };

/** A subscription request as the REST API, gRPC and the SDK send it; validated by the manager. */
export interface SubscriptionInput {
  /** `[A-Za-z0-9_.-]{1,128}`. */
  name: string;
  selector: SelectorInput;
  /** JSON form: `"new" | "earliest" | {"offset": N} | {"time": ISO} | {"last": N}`. Default `new`. */
  start?: unknown;
}

/** A subscription as the API shows it. */
export interface SubscriptionView {
  readonly name: string;
  readonly selector: Selector;
  /** `active` while a consumer is attached (gRPC stream, SSE, or an HTTP pull within the last 30 s). */
  readonly state: 'active' | 'sleeping';
  /** Everything matching the selector up to here was acknowledged. */
  readonly ackedOffset: bigint;
  /** The head of the log. */
  readonly headOffset: bigint;
  /** Matching events above the acknowledged offset (counted up to 1,000,000, then capped). */
  readonly lagEvents: number;
  /** Age of the oldest unacknowledged matching event, seconds; 0 when nothing is due. */
  readonly lagSeconds: number;
  /** The active consumer, e.g. `grpc 127.0.0.1:51234`, `http`, `sse 127.0.0.1:40000`. */
  readonly consumer: string | undefined;
  /** The name of the in-memory receiver shared by the subscriptions of this selector, `herald.sub.<hash>`. */
  readonly queue: string;
  readonly createdAt: number;
}

/** An event on its way to a subscription consumer. */
export type DeliveredEvent = StoredEvent & {
  /** Set on events a replay into this subscription re-sends (their offsets are old). */
  readonly replay?: string | undefined;
};

/** How a consumer attaches. */
export interface AttachRequest {
  name: string;
  /** Needed when the subscription does not exist yet (it is created); must match when it does. */
  selector?: SelectorInput | undefined;
  /** For a subscription created by this attach. */
  start?: unknown;
  /** At most this many delivered but unacknowledged events (1–10,000; default 100). */
  maxInFlight?: number | undefined;
  /** Who attaches, for the API's view and logs. */
  consumer: string;
  /**
   * The offset of the last event the client already has (SSE's `Last-Event-ID`): when this consumer
   * becomes active it acknowledges everything up to here, as an ack would, and resumes after it (or
   * after the acknowledged offset when that is higher). At most the head of the log (the caller checks).
   */
  resumeAfter?: bigint | undefined;
}

/**
 * One attached consumer of a subscription (gRPC stream, SSE). At most one consumer of a
 * subscription is active; a later attach waits as a standby (`active` resolves when it takes over).
 */
export interface Consumer {
  readonly name: string;
  /** Resolves when this consumer is the active one; rejects when closed before that. */
  readonly active: Promise<void>;
  /**
   * The next events in offset order (catch-up from the log, then live), at most `max` and at most
   * what max-in-flight leaves room for; waits until there is at least one or the signal aborts
   * (then resolves []). Never delivers an offset twice while the consumer is attached (replays aside).
   */
  next(max: number, signal?: AbortSignal): Promise<DeliveredEvent[]>;
  /** Cumulative: everything delivered up to `offset` is done. Acks above what was delivered are rejected (INVALID_REQUEST). */
  ack(offset: bigint): void;
  /**
   * Frees the max-in-flight window up to `offset` without acknowledging anything: the transport
   * handed those events on (SSE: the socket took them) and bounds what it holds by itself. They stay
   * unacknowledged until an ack (or a later attach's `resumeAfter`) says the client has them.
   */
  release(offset: bigint): void;
  /** Detaches: the subscription sleeps with its acknowledged offset saved (or a standby takes over). Idempotent. */
  close(): Promise<void>;
  /** Resolves with the reason when the hub ends this consumer (subscription deleted, hub stopping, taken over). */
  readonly ended: Promise<string>;
}

/**
 * The durable subscriptions of DESIGN.md §1/§3.5 (seed 001): state in the store, one shared
 * receiver queue per canonical selector, catch-up from the log then live without gap or repeat.
 */
export interface SubscriptionManager {
  /** Restores subscriptions and receivers from the store; before it resolves nothing is served. */
  start(): Promise<void>;
  /** Ends every consumer, saves acknowledged offsets, stops consuming receivers. */
  stop(): Promise<void>;
  /**
   * CONFLICT when it exists with another selector; returns the existing one when identical.
   * LIMIT_EXCEEDED when a new one would pass the cap (HERALD_MAX_SUBSCRIPTIONS); attach creates through the same path.
   */
  create(input: SubscriptionInput): Promise<SubscriptionView>;
  list(): Promise<SubscriptionView[]>;
  get(name: string): Promise<SubscriptionView | undefined>;
  /** The selector of a subscription, from memory (no lag or head query, unlike get); undefined when absent. */
  selectorOf(name: string): Selector | undefined;
  /** Consumers waiting behind the active one (0 when absent). */
  standbysOf(name: string): number;
  /** Each in-memory receiver (named `herald.sub.<hash>` after its selector): live events buffered by its fullest consumer, and the bound. */
  receiverDepths(): Promise<{ queue: string; messages: number; limit: number }[]>;
  /**
   * Live events from the dispatcher (forwarded or released, in offset order; never a replay into
   * the flow), for the attached consumers of the subscriptions they match. Synchronous and cheap:
   * sleeping subscriptions cost nothing.
   */
  feed(events: readonly StoredEvent[]): void;
  /** Ends its consumer, removes it, and its in-memory receiver when it was the last user. False when absent. */
  delete(name: string): Promise<boolean>;
  attach(req: AttachRequest): Promise<Consumer>;
  /**
   * HTTP pull: events after the acknowledged offset (unacknowledged ones again), at most `max`,
   * waiting up to `waitMs` for the first. NOT_FOUND for an unknown subscription; CONFLICT while
   * an attached consumer (gRPC, SSE) is active.
   */
  pull(name: string, opts: { max: number; waitMs: number; signal?: AbortSignal }): Promise<DeliveredEvent[]>;
  /** HTTP ack: cumulative, like Consumer.ack. NOT_FOUND; INVALID_REQUEST for an offset above the head. */
  ack(name: string, offset: bigint): Promise<void>;
  /**
   * Replay into one subscription: re-sends the events of (after, upTo] matching `selector` (and the
   * subscription's own selector), marked with the replay id, before its next live events. Returns
   * the number of events it will send. The replay is kept in the replays table (target
   * `subscription:<name>`; `from`/`to` as asked, default the offsets of the range): its position and
   * count are saved per chunk sent, it is `done` when finished, `failed` when the subscription is
   * deleted first, and a restarted manager continues it. NOT_FOUND for an unknown subscription;
   * rejects when the store fails (nothing kept, nothing sent).
   */
  replay(name: string, range: SubscriptionReplay): Promise<number>;
  /** Replays into subscriptions pending or running (they count against HERALD_MAX_REPLAYS). */
  activeReplays(): number;
  /**
   * Cancels a replay into subscription `name`: once the read in progress is done, no more of its
   * events are handed out; its row is `cancelled` (those already handed out stay delivered, to be
   * acknowledged as usual). False when the subscription or an unfinished replay `id` into it is not
   * there. Rejects when the store fails (the replay then goes on).
   */
  cancelReplay(name: string, id: string): Promise<boolean>;
}

/** A replay into one subscription, its range resolved against the log (see resolveReplayRange). */
export interface SubscriptionReplay {
  id: string;
  selector: Selector;
  /** Offsets in (after, upTo], event time in [since, until). */
  after: bigint;
  upTo: bigint;
  since?: number | undefined;
  until?: number | undefined;
  /** As the client asked, for GET /api/v1/replays/{id}; default the offsets of the range. */
  from?: ReplayFrom | undefined;
  to?: ReplayTo | undefined;
}

/** What the manager reports as it delivers. */
export interface SubscriptionMetrics {
  deliveredTo(subscription: string, n: number): void;
  forgetSubscription(subscription: string): void;
}
