import type { DeliveredEvent, EventInit, SelectorInput } from '@herald/core';
import type { JsonSchema, PublishValidator } from './validation.ts';

/** Where to reach RabbitMQ. Default: `HERALD_AMQP_URL`, else `amqp://guest:guest@127.0.0.1:5672`. */
export interface ConnectionOptions {
  /** AMQP URL. Default: `process.env.HERALD_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'`. */
  url?: string;
  /** Reconnect backoff: first delay in ms. Default 100. */
  reconnectInitialDelayMs?: number;
  /** Reconnect backoff: longest delay in ms. Default 5000. */
  reconnectMaxDelayMs?: number;
  /** Connection name shown in RabbitMQ's management UI. Default: `herald-<role>-<pid>`. */
  connectionName?: string;
}

export interface PublisherOptions extends ConnectionOptions {
  /** The sender this publisher speaks for (DESIGN.md §1). Required. */
  sender: string;
  /**
   * How many publishes may wait, unconfirmed or buffered during an outage, before `publish` waits
   * for room (backpressure). Default 10,000.
   */
  maxPending?: number;
  /** A publish not confirmed within this many ms rejects with TIMEOUT. Default 30,000 (0 = never). */
  confirmTimeoutMs?: number;
  /** Largest event body in bytes; larger publishes reject with EVENT_TOO_LARGE. Default 1 MiB. */
  maxEventBytes?: number;
  /** Set AMQP `user_id` to the URL's user, so RabbitMQ vouches for the publisher. Default true. */
  setUserId?: boolean;
  /**
   * Declare the exchanges Herald needs (not the archive binding) on every connect instead of only
   * checking that `herald.ingest` exists. Default false: the hub or `herald topology` owns them.
   */
  declareTopology?: boolean;
  /**
   * Told about trouble that does not belong to one publish: a lost connection, a missing exchange.
   * Default: ignored (the publishes concerned reject or are re-sent on their own).
   */
  onError?: (err: Error) => void;
  /**
   * JSON Schemas by event type, checked before each publish: an event of a type listed here whose
   * data does not match (or is not JSON) rejects with a ValidationError (SCHEMA_VIOLATION) and is
   * not sent. Needs the optional peer `ajv` (and `ajv-formats` to check `format`), loaded only when
   * this is given; without it the publisher cannot be created (INVALID_CONFIG).
   * `loadCatalogSchemas()` reads them from the hub's event catalog. Default: none.
   */
  schemas?: Readonly<Record<string, JsonSchema>>;
  /**
   * A check of each event before it is sent: return a reason to refuse it, which rejects the
   * publish with a ValidationError (SCHEMA_VIOLATION); a throw counts as a reason. `data` is the
   * payload as the hub sees it (the JSON value, or the bytes of a non-JSON body). Default: none.
   */
  validate?: PublishValidator;
}

/** Per-publish options: everything of EventInit but sender, type and data, and an AbortSignal. */
export type PublishOptions = Omit<EventInit, 'sender' | 'type' | 'data'> & {
  /**
   * Stops waiting for this publish: it rejects with ABORTED at once. If the event was not sent yet
   * (buffered during an outage, or waiting for room) it is never sent; if it was, it may still be
   * stored. To be sure either way, publish again with the same `id`: the log stores an id once.
   */
  signal?: AbortSignal | undefined;
};

/**
 * Maps event type names to their payload types, for compile-time checks:
 * `createPublisher<{ 'invoice.paid': { amount: number } }>(…)`. A promise the code makes to itself,
 * not checked at run time. Without one, any type and any data are accepted.
 */
export type EventMap = object;

/** The map used when none is given: every type, any payload. */
export type AnyEvents = Record<string, unknown>;

/** The arguments after the type: the payload is required unless the map allows undefined. */
export type PublishArgs<D> = undefined extends D ? [data?: D, options?: PublishOptions] : [data: D, options?: PublishOptions];

/**
 * A delivered event of a typed subscriber: one member per type of the map, so checking
 * `event.type` narrows what `payload()` returns.
 */
export type EventOf<E extends EventMap = AnyEvents> = {
  [K in keyof E & string]: DeliveredEvent & {
    readonly type: K;
    /**
     * The data as the publisher passed it: a JSON body (application/json or +json) parsed, a text
     * body (text/*) as a string, any other body as its bytes. Parses on each call; a body that is
     * not valid JSON throws a ValidationError (INVALID_EVENT), which in a handler counts as a
     * failed attempt. `data` keeps the raw bytes.
     */
    payload(): E[K];
  };
}[keyof E & string];

/** What a confirmed publish resolves with. */
export interface PublishReceipt {
  /** The event id (the idempotency key). */
  readonly id: string;
}

/**
 * Publishes events to `herald.ingest` with publisher confirms.
 *
 * `publish` resolves once RabbitMQ confirmed the event (it is on disk) and rejects with a
 * HeraldError otherwise (PUBLISH_FAILED on nack, TIMEOUT, CLOSED, INVALID_* for bad input).
 * Confirms are pipelined: many publishes are in flight at once. When the connection drops, the
 * publisher reconnects with backoff and re-sends everything not yet confirmed (safe: the event id
 * is the idempotency key); publishes issued meanwhile wait in a bounded buffer, and once it is full
 * `publish` waits for room instead of growing memory.
 */
export interface Publisher<E extends EventMap = AnyEvents> {
  publish<K extends keyof E & string>(type: K, ...args: PublishArgs<E[K]>): Promise<PublishReceipt>;
  /** Waits until everything published so far is confirmed or failed. */
  flush(): Promise<void>;
  /** Flushes, then closes the connection. Publishing after close rejects with CLOSED. */
  close(): Promise<void>;
  /** Publishes waiting for a confirm or for a connection. */
  readonly pending: number;
  /** close(), for `await using publisher = createPublisher(…)`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The ack contract, said once: the handler resolving acknowledges the event; the handler throwing
 * retries it after `retryDelayMs`, up to `maxAttempts` attempts in all, then the event goes to
 * `herald.dead` with the reason and the attempt count in its headers. Nothing is redelivered
 * forever and nothing is dropped silently.
 */
export type Handler<E extends EventMap = AnyEvents> = (event: EventOf<E>) => Promise<void> | void;

export interface SubscriberOptions extends ConnectionOptions {
  /** Which events to receive (DESIGN.md §1). Required. */
  selector: SelectorInput;
  /**
   * The queue's name. A named queue is durable and reused by name (events wait there while the
   * subscriber is away). Default: a server-named exclusive queue that lives as long as the
   * subscriber (events published while it is away are not kept).
   */
  queue?: string;
  /**
   * The RabbitMQ type of the named queue: `classic` (the default) or `quorum` (replicated over a
   * RabbitMQ cluster), as the hub's HERALD_QUEUE_TYPE. Quorum needs a named `queue`: a server-named
   * queue is exclusive, which quorum queues refuse. RabbitMQ cannot change the type of an existing
   * queue: declaring one of the other type fails, reported through `onError` while it retries.
   */
  queueType?: 'classic' | 'quorum';
  /** Handlers running at once. 1 (the default) keeps events in order. */
  concurrency?: number;
  /** Unacknowledged deliveries RabbitMQ sends ahead. Default: max(concurrency × 2, 50). */
  prefetch?: number;
  /** Attempts before an event goes to the dead letters. Default 5. */
  maxAttempts?: number;
  /** Delay before a failed event is tried again, ms. Default 1000. */
  retryDelayMs?: number;
  /** Largest event body accepted; larger deliveries go to the dead letters. Default 1 MiB. */
  maxEventBytes?: number;
  /**
   * Told about trouble outside a handler: a lost connection, a queue that cannot be declared, a
   * dead letter that could not be published. Default: ignored (the subscriber keeps reconnecting).
   */
  onError?: (err: Error) => void;
  /** Aborting it closes the subscriber, as close() does. Default: none. */
  signal?: AbortSignal;
}

/** A subscriber with a handler: runs until closed, surviving reconnects. */
export interface Subscriber {
  /** The queue being consumed (resolved once the first connection is set up). */
  readonly queue: Promise<string>;
  /** Stops taking deliveries, waits for handlers in flight, then closes. Idempotent. */
  close(): Promise<void>;
  /** close(), for `await using subscriber = createSubscriber(…)`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** An event from an async-iterator subscription; call `ack()` when done (or `nack(err)` to retry). */
export type ReceivedEvent<E extends EventMap = AnyEvents> = EventOf<E> & {
  ack(): void;
  /** Counts as a failed attempt: retried after a delay, then dead-lettered. */
  nack(reason?: unknown): void;
  /** The delivery attempt, starting at 1. */
  readonly attempt: number;
};
