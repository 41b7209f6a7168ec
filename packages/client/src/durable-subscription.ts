import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  type ErrorCode,
  ErrorCodes,
  fromWireEvent,
  GRPC_ERROR_CODE_KEY,
  GRPC_SERVICE,
  HeraldError,
  PROTO_LOADER_OPTIONS,
  PROTO_PATH,
  type SelectorInput,
  type WireOpen,
  type WireSubscribeRequest,
  type WireSubscribeResponse,
} from '@herald/core';
import { type NormalizedDurableSubscription, normalizeDurableSubscriptionOptions } from './options.ts';
import { withPayload } from './payload.ts';
import type { AnyEvents, EventMap, EventOf } from './types.ts';

/**
 * Where a subscription starts when this call creates it. An existing subscription ignores it and
 * resumes after its acknowledged offset. `resume` (the default) = resume if it exists, else `new`.
 */
export type SubscriptionStart =
  | 'resume'
  | 'new'
  | 'earliest'
  | { offset: bigint | number | string }
  | { time: Date | number | string }
  | { last: number };

/** Options of subscription(). */
export interface DurableSubscriptionOptions {
  /**
   * The hub's gRPC address, `host:port` (a `grpc://` or `http://` prefix is tolerated), or the
   * addresses of several hubs (a list, or one string separated by commas; at most 16): one of them
   * holds the writer lease and serves subscriptions, the others answer UNAVAILABLE, and after each
   * failure the subscription tries the next address, so it follows the lease to whichever hub holds
   * it. Default: HERALD_GRPC_URL (commas allowed), else `127.0.0.1:$HERALD_GRPC_PORT`, else
   * `127.0.0.1:50051`.
   */
  url?: string | readonly string[] | undefined;
  /** Where a subscription created by this call starts. Default `resume` (= `new` when created). */
  start?: SubscriptionStart | undefined;
  /** At most this many events delivered and not yet acknowledged (1–10,000). Default 100. */
  maxInFlight?: number | undefined;
  /** Aborting it closes the subscription (the iteration ends; acks made so far are sent first). */
  signal?: AbortSignal | undefined;
  /**
   * The API token, sent as `authorization: Bearer <token>` metadata on every stream. Default:
   * HERALD_TOKEN, else none.
   */
  token?: string | undefined;
  /** First delay before reconnecting after the stream broke, ms; doubles up to the maximum. Default 100. */
  reconnectInitialDelayMs?: number | undefined;
  /** Longest delay between reconnect attempts, ms. Default 5000. */
  reconnectMaxDelayMs?: number | undefined;
  /** Told of every transient failure the subscription recovers from by reconnecting. Default: none. */
  onError?: ((err: HeraldError) => void) | undefined;
}

/** An event of a durable subscription: its offset is exact, and `ack()` settles it. */
export type SubscriptionEvent<E extends EventMap = AnyEvents> = EventOf<E> & {
  readonly offset: bigint;
  /**
   * Acknowledges this event and, cumulatively, every event before it in this subscription. Acks are
   * coalesced (one message per tick, the highest offset) and survive reconnects: an ack made while
   * the stream is down is sent on the next stream. Unacknowledged events are delivered again after a
   * reconnect or a restart of the consumer; never lost. A replayed event (`replay` set, an old
   * offset) is settled by its ack without acknowledging anything else.
   */
  ack(): void;
};

/** A durable subscription read with `for await`; see subscription(). */
export interface DurableSubscription<E extends EventMap = AnyEvents> extends AsyncIterable<SubscriptionEvent<E>> {
  readonly name: string;
  /**
   * Sends the pending acks, detaches (the subscription sleeps on the hub with its acknowledged
   * offset; waits up to 2 s for the hub to confirm) and ends the iteration. Idempotent.
   */
  close(): Promise<void>;
  /** close(), for `await using sub = subscription(…)`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** gRPC statuses a retry cannot fix: the request itself is wrong. */
const PERMANENT = new Set<grpc.status>([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.UNIMPLEMENTED,
  grpc.status.OUT_OF_RANGE,
]);

/** A status without the hub's `herald-code` (a proxy, an old hub, the channel itself): the nearest code. */
function codeOfStatus(code: grpc.status): ErrorCode {
  switch (code) {
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.OUT_OF_RANGE:
      return ErrorCodes.INVALID_REQUEST;
    case grpc.status.NOT_FOUND:
      return ErrorCodes.NOT_FOUND;
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.FAILED_PRECONDITION:
      return ErrorCodes.CONFLICT;
    case grpc.status.DEADLINE_EXCEEDED:
      return ErrorCodes.TIMEOUT;
    case grpc.status.RESOURCE_EXHAUSTED:
      return ErrorCodes.LIMIT_EXCEEDED;
    case grpc.status.UNAUTHENTICATED:
      return ErrorCodes.UNAUTHENTICATED;
    case grpc.status.PERMISSION_DENIED:
      return ErrorCodes.FORBIDDEN;
    default:
      return ErrorCodes.UNAVAILABLE;
  }
}

/** The HeraldError a stream's status stands for (its `herald-code` when the hub sent one). */
export function errorOfStatus(status: Pick<grpc.StatusObject, 'code' | 'details' | 'metadata'>, what: string): HeraldError {
  const sent = status.metadata?.get(GRPC_ERROR_CODE_KEY)[0];
  const code = typeof sent === 'string' && sent in ErrorCodes ? (sent as ErrorCode) : codeOfStatus(status.code);
  const name = grpc.status[status.code] ?? String(status.code);
  return new HeraldError(code, `${what}: ${status.details || name} (gRPC ${name})`, { details: { grpcStatus: status.code } });
}

interface SubscribeMethod {
  path: string;
  serialize: (m: WireSubscribeRequest) => Buffer;
  deserialize: (b: Buffer) => WireSubscribeResponse;
}

let method: Promise<SubscribeMethod> | undefined;

/** The Subscribe method's (de)serializers, loaded once from core's .proto. */
function subscribeMethod(): Promise<SubscribeMethod> {
  method ??= protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS }).then((def) => {
    const m = (def[GRPC_SERVICE] as grpc.ServiceDefinition).Subscribe as grpc.MethodDefinition<WireSubscribeRequest, WireSubscribeResponse>;
    return { path: m.path, serialize: m.requestSerialize, deserialize: m.responseDeserialize };
  });
  return method;
}

/**
 * Keepalive: ping a connection idle for 20 s, give up on it after 10 s without an answer, so a hub
 * that vanished (host down, network cut) is noticed and the subscription reconnects.
 */
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  // HTTP/2's default 64 KiB receive window holds ~60 events of 1 KiB: the hub would wait for a
  // window update every few batches. max-in-flight bounds what is outstanding anyway.
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
  // The channel's own reconnects follow the subscription's pace, not grpc's 1 s minimum.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 5000,
};

const CLOSE_WAIT_MS = 2000;

type Call = grpc.ClientDuplexStream<WireSubscribeRequest, WireSubscribeResponse>;

class DurableSubscriptionImpl implements DurableSubscription, AsyncIterator<SubscriptionEvent> {
  readonly name: string;
  /** One channel per hub address, made when first used. */
  private readonly clients = new Map<string, grpc.Client>();
  /** Index in `opts.urls` of the hub the next stream goes to. */
  private at = 0;
  /** Received, not yet yielded; bounded by max in flight (the hub sends no more until acks come). */
  private buffer: SubscriptionEvent[] = [];
  private head = 0;
  private waiter: { resolve: (r: IteratorResult<SubscriptionEvent>) => void; reject: (err: unknown) => void } | undefined;
  private failure: HeraldError | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly stopped = new AbortController();
  private loop: Promise<void> | undefined;
  /** Highest offset taken in by this subscription object (live events, not replays): redeliveries at or below are skipped. */
  private seen = -1n;
  /** Highest offset the caller acknowledged. */
  private ackWanted = -1n;
  private ackScheduled = false;
  /** A replayed event was acked: send the cumulative ack again even if it did not move. */
  private resendAck = false;
  private call: Call | undefined;
  private callOpened = false;
  /** Highest live offset the current stream delivered: the hub rejects acks above it. */
  private callDelivered = -1n;
  /** Highest ack sent on (or implied by `opened` of) the current stream. */
  private callAcked = -1n;
  private callStatus: Promise<void> | undefined;

  constructor(private readonly opts: NormalizedDurableSubscription) {
    this.name = opts.name;
    if (opts.signal?.aborted) void this.close();
    else opts.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent> {
    return this;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  next(): Promise<IteratorResult<SubscriptionEvent>> {
    if (this.head < this.buffer.length) {
      const value = this.buffer[this.head++] as SubscriptionEvent;
      if (this.head > 1024 && this.head * 2 > this.buffer.length) {
        this.buffer = this.buffer.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.failure) {
      const err = this.failure;
      this.failure = undefined;
      this.closed = true;
      return Promise.reject(err);
    }
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    this.loop ??= this.run();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  async return(): Promise<IteratorResult<SubscriptionEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    this.stopped.abort();
    this.buffer = [];
    this.head = 0;
    this.wake();
    const call = this.call;
    if (call) {
      // Send the last acks and half-close: the hub saves the acknowledged offset, then ends the
      // stream with OK. Cancel if it does not answer in time (it keeps what it got).
      this.flushAcks();
      this.callOpened = false;
      call.end();
      await Promise.race([this.callStatus, new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref())]);
      call.cancel();
    }
    await this.loop;
    this.closeClients();
  }

  private get url(): string {
    return this.opts.urls[this.at] as string;
  }

  private client(): grpc.Client {
    let client = this.clients.get(this.url);
    if (!client) {
      client = new grpc.Client(this.url, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      this.clients.set(this.url, client);
    }
    return client;
  }

  private closeClients(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  /** Hands what is there (an event, the failure, the end) to a waiting next(). */
  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.head < this.buffer.length || this.failure || this.closed) {
      this.waiter = undefined;
      this.next().then(w.resolve, w.reject);
    }
  }

  /**
   * A replayed event's offset is old: its ack re-sends the current cumulative ack, which settles
   * the replayed events the hub counts in flight without acknowledging anything new.
   */
  private ack(offset: bigint, replay: boolean): void {
    if (replay) this.resendAck = true;
    else if (offset <= this.ackWanted) return;
    else this.ackWanted = offset;
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      this.flushAcks();
    });
  }

  /** Sends the caller's cumulative ack, clamped to what the current stream delivered. */
  private flushAcks(): void {
    const call = this.call;
    if (!call || !this.callOpened) return;
    let target = this.ackWanted < this.callDelivered ? this.ackWanted : this.callDelivered;
    if (target <= this.callAcked) {
      if (!this.resendAck || this.callAcked < 0n) return;
      target = this.callAcked;
    }
    this.resendAck = false;
    this.callAcked = target;
    call.write({ ack: { offset: target.toString() } });
  }

  /** Streams, and reconnects with backoff until closed or a permanent failure. */
  private async run(): Promise<void> {
    let delay = this.opts.reconnectInitialDelayMs;
    let m: SubscribeMethod;
    try {
      m = await subscribeMethod();
    } catch (err) {
      this.fail(new HeraldError(ErrorCodes.INVALID_CONFIG, `cannot load the Herald proto at ${PROTO_PATH}`, { cause: err }));
      return;
    }
    while (!this.closed) {
      const { status, opened } = await this.stream(m);
      if (this.closed) return;
      const err = errorOfStatus(status, `subscription ${this.name} at ${this.url}`);
      if (PERMANENT.has(status.code)) {
        this.fail(err);
        return;
      }
      if (opened) delay = this.opts.reconnectInitialDelayMs;
      this.opts.onError?.(err);
      // The next hub of the list: the one that holds the writer lease now may be another. The
      // delay grows once per round of the list, so every hub is asked soon after a takeover.
      this.at = (this.at + 1) % this.opts.urls.length;
      const wait = Math.round(delay * (0.5 + Math.random() / 2));
      // Ends early (rejects) when the subscription closes.
      await sleep(wait, undefined, { signal: this.stopped.signal }).catch(() => undefined);
      if (this.at === 0) delay = Math.min(delay * 2, this.opts.reconnectMaxDelayMs);
    }
  }

  private fail(err: HeraldError): void {
    this.failure = err;
    this.stopped.abort();
    this.wake();
    this.closeClients();
  }

  /** One stream, from open to its status. */
  private stream(m: SubscribeMethod): Promise<{ status: grpc.StatusObject; opened: boolean }> {
    return new Promise((resolve) => {
      let opened = false;
      const metadata = new grpc.Metadata();
      if (this.opts.token !== undefined) metadata.set('authorization', `Bearer ${this.opts.token}`);
      const call = this.client().makeBidiStreamRequest(m.path, m.serialize, m.deserialize, metadata);
      this.call = call;
      this.callOpened = false;
      this.callDelivered = -1n;
      this.callAcked = -1n;
      this.callStatus = new Promise<void>((done) => {
        call.on('status', (status: grpc.StatusObject) => {
          if (this.call === call) this.call = undefined;
          done();
          resolve({ status, opened });
        });
      });
      // Failures also arrive as 'status'; without a listener 'error' would throw.
      call.on('error', () => undefined);
      call.on('data', (msg: WireSubscribeResponse) => {
        if (msg.opened) {
          opened = true;
          this.callOpened = true;
          this.callAcked = BigInt(msg.opened.ackedOffset);
          this.callDelivered = this.callAcked;
        } else if (msg.events) {
          this.take(msg.events.events.map(fromWireEvent));
        }
        this.flushAcks();
      });
      const open: WireOpen = { name: this.name, selector: this.opts.selector, start: this.opts.start, maxInFlight: this.opts.maxInFlight };
      call.write({ open });
    });
  }

  private take(events: ReturnType<typeof fromWireEvent>[]): void {
    if (this.closed) return;
    for (const e of events) {
      if (e.replay === undefined) {
        if (e.offset > this.callDelivered) this.callDelivered = e.offset;
        // Delivered again after a reconnect (not acknowledged yet): this object has it already.
        if (e.offset <= this.seen) continue;
        this.seen = e.offset;
      }
      const offset = e.offset;
      const replay = e.replay !== undefined;
      this.buffer.push({ ...withPayload(e), ack: () => this.ack(offset, replay) });
    }
    this.wake();
  }
}

/**
 * A durable subscription over the hub's gRPC API: `for await (const e of subscription('billing',
 * 'billing:*')) { …; e.ack() }`. Creates the subscription on first use (with `start`), or resumes
 * it after its acknowledged offset. Events come in offset order (replays aside, which are marked),
 * at most `maxInFlight` unacknowledged at a time; `ack()` is cumulative.
 *
 * Reconnect: when the stream breaks (hub restart or crash, network, UNAVAILABLE, a keepalive
 * timeout) it reconnects by itself with backoff (100 ms doubling to 5 s, jittered; with several hub
 * addresses, to the next one, the delay growing once per round) and resumes where the hub's
 * acknowledged offset says; events this object already yielded are not yielded
 * again, and acks made meanwhile are sent on the new stream. Transient failures go to `onError`.
 * While another consumer holds the subscription this one waits as a standby.
 *
 * Failure: bad options throw a ValidationError at once. Permanent failures end the iteration by
 * throwing a HeraldError from it: INVALID_SELECTOR / INVALID_REQUEST (a bad name or selector),
 * CONFLICT (the subscription exists with another selector), NOT_FOUND (deleted while consumed).
 *
 * Leaving the loop (`break`, a throw, the signal) closes it: pending acks are sent, the
 * subscription sleeps on the hub, and unacknowledged events come again next time — at least
 * once, never lost.
 */
export function subscription<E extends EventMap = AnyEvents>(
  name: string,
  selector: SelectorInput,
  options: DurableSubscriptionOptions = {},
): DurableSubscription<E> {
  // The map is compile-time only: the events are SubscriptionEvent<E> as far as the caller said.
  return new DurableSubscriptionImpl(normalizeDurableSubscriptionOptions(name, selector, options)) as unknown as DurableSubscription<E>;
}
