import type * as grpc from '@grpc/grpc-js';
import {
  createEvent,
  type ErrorCode,
  ErrorCodes,
  type EventInit,
  HeraldError,
  type HeraldEvent,
  ValidationError,
  type WirePublishAck,
  type WirePublishRequest,
  type WirePublishStreamRequest,
  type WirePublishStreamResponse,
} from '@herald/core';
import { later } from './connection.ts';
import { type NormalizedHubPublisher, normalizeHubPublisherOptions } from './options.ts';
import { loadOpenTelemetry, openTelemetryLoaded, withActiveTraceContext } from './trace-context.ts';
import type { AnyEvents, EventMap, PublishArgs, PublishOptions, PublishReceipt } from './types.ts';
import type { JsonSchema, PublishValidator } from './validation.ts';

/** Options of createHubPublisher(). */
export interface HubPublisherOptions {
  /** The sender this publisher speaks for; the token's user must be allowed to publish as it. Required. */
  sender: string;
  /**
   * The hub's gRPC address `host:port`, or several (a list, or one string separated by commas): after
   * each failure the next one is tried, so the publisher follows the writer lease. Default:
   * HERALD_GRPC_URL, else `127.0.0.1:$HERALD_GRPC_PORT`, else `127.0.0.1:50051`.
   */
  url?: string | readonly string[] | undefined;
  /** The API token, sent as `authorization: Bearer <token>`. Default: HERALD_TOKEN, else none. */
  token?: string | undefined;
  /** Publishes admitted (unanswered or waiting for the stream) before `publish` waits for room. Default 10,000. */
  maxPending?: number | undefined;
  /** A publish the hub did not answer within this many ms rejects with TIMEOUT. Default 30,000 (0 = never). */
  confirmTimeoutMs?: number | undefined;
  /** Largest event body in bytes; larger publishes reject with EVENT_TOO_LARGE. Default 1 MiB. */
  maxEventBytes?: number | undefined;
  /** First delay before reconnecting after the stream broke, ms; doubles up to the maximum. Default 100. */
  reconnectInitialDelayMs?: number | undefined;
  /** Longest delay between reconnect attempts, ms. Default 5000. */
  reconnectMaxDelayMs?: number | undefined;
  /** Told of every stream failure the publisher recovers from by reconnecting. Default: none. */
  onError?: ((err: Error) => void) | undefined;
  /** As the AMQP publisher's `schemas`: checked before each publish. */
  schemas?: Readonly<Record<string, JsonSchema>> | undefined;
  /** As the AMQP publisher's `validate`. */
  validate?: PublishValidator | undefined;
}

/** What a publish through the hub resolves with. */
export interface HubPublishReceipt extends PublishReceipt {
  /** The event's position in the log, when the hub told it. */
  readonly offset: bigint | undefined;
  /** The log already held an event with this id (this publish stored nothing new). */
  readonly duplicate: boolean;
}

/** A publisher that sends to the hub's gRPC PublishStream (docs/sdk.md). */
export interface HubPublisher<E extends EventMap = AnyEvents> {
  publish<K extends keyof E & string>(type: K, ...args: PublishArgs<E[K]>): Promise<HubPublishReceipt>;
  /** Waits until everything published so far is answered or failed. */
  flush(): Promise<void>;
  /** Flushes, then closes the stream. Publishing after close rejects with CLOSED. */
  close(): Promise<void>;
  /** Publishes admitted and not answered yet. */
  readonly pending: number;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Refusals that are the hub's trouble, not the event's: sent again on a new stream. */
const RETRIED = new Set<string>([ErrorCodes.UNAVAILABLE, ErrorCodes.CLOSED]);
/** Stream statuses a retry cannot fix (gRPC codes). */
const PERMANENT_STATUS = new Set<number>([3, 7, 12, 16]);
/** One request carries at most this many events … */
const REQUEST_EVENTS = 500;
/** … and about this many bytes (a single larger event goes alone). */
const REQUEST_BYTES = 256 * 1024;

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 5000,
};

interface StreamMethod {
  grpc: typeof grpc;
  path: string;
  serialize: (m: WirePublishStreamRequest) => Buffer;
  deserialize: (b: Buffer) => WirePublishStreamResponse;
  errorOfStatus: (status: grpc.StatusObject, what: string) => HeraldError;
}

let method: Promise<StreamMethod> | undefined;

/** gRPC and the PublishStream method, loaded on first use so that importing `@herald/client` does not load gRPC. */
function streamMethod(): Promise<StreamMethod> {
  method ??= (async () => {
    const [g, loader, core, sub] = await Promise.all([
      import('@grpc/grpc-js'),
      import('@grpc/proto-loader'),
      import('@herald/core'),
      import('./durable-subscription.ts'),
    ]);
    const def = await loader.load(core.PROTO_PATH, { ...core.PROTO_LOADER_OPTIONS });
    const m = (def[core.GRPC_SERVICE] as grpc.ServiceDefinition).PublishStream as grpc.MethodDefinition<
      WirePublishStreamRequest,
      WirePublishStreamResponse
    >;
    return { grpc: g, path: m.path, serialize: m.requestSerialize, deserialize: m.responseDeserialize, errorOfStatus: sub.errorOfStatus };
  })();
  return method;
}

/** One publish: admitted in order, sent on a stream under a sequence number until answered. */
interface Pending {
  readonly order: number;
  readonly id: string;
  readonly request: WirePublishRequest;
  readonly bytes: number;
  readonly deadline: number;
  readonly resolve: (r: HubPublishReceipt) => void;
  readonly reject: (err: unknown) => void;
  settled: boolean;
  unlisten: (() => void) | undefined;
}

type Call = grpc.ClientDuplexStream<WirePublishStreamRequest, WirePublishStreamResponse>;

function requestOf(e: HeraldEvent): WirePublishRequest {
  const r: WirePublishRequest = {
    id: e.id,
    sender: e.sender,
    type: e.type,
    data: e.data,
    contentType: e.contentType,
    timeMs: String(e.time),
    headers: e.headers,
  };
  if (e.subject !== undefined) r.subject = e.subject;
  if (e.correlationId !== undefined) r.correlationId = e.correlationId;
  if (e.causationId !== undefined) r.causationId = e.causationId;
  if (e.traceparent !== undefined) r.traceparent = e.traceparent;
  if (e.tracestate !== undefined) r.tracestate = e.tracestate;
  return r;
}

function sizeOf(r: WirePublishRequest): number {
  let n = 128 + r.data.length + r.sender.length + r.type.length;
  for (const k in r.headers) n += 3 * (k.length + (r.headers[k]?.length ?? 0)) + 4;
  return n;
}

class HubPublisherImpl implements HubPublisher {
  private readonly s: NormalizedHubPublisher;
  private readonly eventOptions: { maxBytes: number };
  /** Admitted, not sent on the current stream; in publish order. */
  private unsent: Pending[] = [];
  /** Sent on the current stream, by sequence number (insertion order = publish order). */
  private inFlight = new Map<string, Pending>();
  /** Admitted and not settled (bounded by maxPending). */
  private live = 0;
  private blocked: Pending[] = [];
  private order = 0;
  private seq = 0n;
  private call: Call | undefined;
  private client: grpc.Client | undefined;
  private clientUrl = '';
  private at = 0;
  private delay: number;
  private connecting = false;
  private pumpScheduled = false;
  private writeBlocked = false;
  private flushWaiters: (() => void)[] = [];
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly sweeper: NodeJS.Timeout | undefined;

  constructor(options: HubPublisherOptions) {
    this.s = normalizeHubPublisherOptions(options);
    this.eventOptions = { maxBytes: this.s.maxEventBytes };
    this.delay = this.s.reconnectInitialDelayMs;
    void loadOpenTelemetry();
    if (this.s.confirmTimeoutMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(10, this.s.confirmTimeoutMs / 4)));
      this.sweeper.unref();
    }
  }

  get pending(): number {
    return this.live + this.blocked.length;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  publish(type: string, data?: unknown, options?: PublishOptions): Promise<HubPublishReceipt> {
    if (this.closing) return Promise.reject(new HeraldError(ErrorCodes.CLOSED, 'publisher is closed'));
    if (!openTelemetryLoaded()) return loadOpenTelemetry().then(() => this.send(type, data, options));
    return this.send(type, data, options);
  }

  private send(type: string, data?: unknown, options?: PublishOptions): Promise<HubPublishReceipt> {
    const signal = options?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      return Promise.reject(new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid publish option signal: expected an AbortSignal'));
    if (signal?.aborted) return Promise.reject(aborted(signal, options?.id));
    let request: WirePublishRequest;
    try {
      let init: EventInit = { sender: this.s.sender, type, data };
      if (options !== undefined) {
        const { signal: _signal, ...fields } = options;
        init = { ...fields, sender: this.s.sender, type, data };
      }
      const event = createEvent(withActiveTraceContext(init), this.eventOptions);
      this.s.check?.(event);
      request = requestOf(event);
    } catch (err) {
      return Promise.reject(err);
    }
    const deadline = this.s.confirmTimeoutMs > 0 ? Date.now() + this.s.confirmTimeoutMs : 0;
    return new Promise<HubPublishReceipt>((resolve, reject) => {
      const p: Pending = {
        order: this.order++,
        id: request.id as string,
        request,
        bytes: sizeOf(request),
        deadline,
        resolve,
        reject,
        settled: false,
        unlisten: undefined,
      };
      if (signal) {
        const onAbort = () => this.settle(p, aborted(signal, p.id));
        signal.addEventListener('abort', onAbort, { once: true });
        p.unlisten = () => signal.removeEventListener('abort', onAbort);
      }
      if (this.blocked.length === 0 && this.live < this.s.maxPending) this.admit(p);
      else this.blocked.push(p);
    });
  }

  flush(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await loadOpenTelemetry();
      await this.flush();
      this.closed = true;
      if (this.sweeper) clearInterval(this.sweeper);
      const call = this.call;
      this.call = undefined;
      call?.end();
      call?.cancel();
      this.client?.close();
      this.client = undefined;
    })();
    return this.closing;
  }

  private admit(p: Pending): void {
    this.live += 1;
    this.unsent.push(p);
    this.schedulePump();
  }

  /** Settles once: resolves with `receipt` or rejects with `err`, then admits what waits for room. */
  private settle(p: Pending, err: unknown, receipt?: HubPublishReceipt): void {
    if (p.settled) return;
    p.settled = true;
    p.unlisten?.();
    const wasBlocked = this.blocked.includes(p);
    if (!wasBlocked) this.live -= 1;
    if (receipt) p.resolve(receipt);
    else p.reject(err);
    let i = 0;
    while (i < this.blocked.length && this.live < this.s.maxPending) {
      const next = this.blocked[i++] as Pending;
      if (!next.settled) this.admit(next);
    }
    if (i > 0 || wasBlocked) this.blocked = this.blocked.slice(i).filter((b) => !b.settled);
    if (this.flushWaiters.length > 0 && this.pending === 0) {
      const waiters = this.flushWaiters;
      this.flushWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** What is published in one turn goes out together. */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Sends unsent events in order, in requests of up to REQUEST_EVENTS / REQUEST_BYTES, until the stream asks to wait. */
  private pump(): void {
    if (this.closed) return;
    const call = this.call;
    if (!call) {
      if (this.unsent.length > 0) void this.connect();
      return;
    }
    let i = 0;
    const q = this.unsent;
    while (i < q.length && !this.writeBlocked) {
      const events: WirePublishRequest[] = [];
      const first = this.seq;
      let bytes = 0;
      while (i < q.length && events.length < REQUEST_EVENTS) {
        const p = q[i] as Pending;
        if (p.settled) {
          i++;
          continue;
        }
        if (events.length > 0 && bytes + p.bytes > REQUEST_BYTES) break;
        this.inFlight.set((this.seq++).toString(), p);
        events.push(p.request);
        bytes += p.bytes;
        i++;
      }
      if (events.length === 0) break;
      if (!call.write({ seq: first.toString(), events })) {
        this.writeBlocked = true;
        call.once('drain', () => {
          if (this.call !== call) return;
          this.writeBlocked = false;
          this.pump();
        });
      }
    }
    this.unsent = q.slice(i);
  }

  private async connect(): Promise<void> {
    if (this.connecting || this.call || this.closed) return;
    this.connecting = true;
    let m: StreamMethod;
    try {
      m = await streamMethod();
    } catch (err) {
      this.connecting = false;
      this.failAll(new HeraldError(ErrorCodes.INVALID_CONFIG, 'cannot load gRPC or the Herald proto', { cause: err }));
      return;
    }
    this.connecting = false;
    if (this.closed || this.call) return;
    const url = this.s.urls[this.at] as string;
    if (!this.client || this.clientUrl !== url) {
      this.client?.close();
      this.client = new m.grpc.Client(url, m.grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      this.clientUrl = url;
    }
    const metadata = new m.grpc.Metadata();
    if (this.s.token !== undefined) metadata.set('authorization', `Bearer ${this.s.token}`);
    const call = this.client.makeBidiStreamRequest(m.path, m.serialize, m.deserialize, metadata);
    this.call = call;
    this.writeBlocked = false;
    let refusal: HeraldError | undefined;
    call.on('error', () => undefined);
    call.on('data', (msg: WirePublishStreamResponse) => {
      this.delay = this.s.reconnectInitialDelayMs;
      for (const ack of msg.acks) refusal = this.onAck(ack) ?? refusal;
      // The hub's trouble (a standby, stopping): this stream ends and the rest goes to the next one.
      if (refusal && this.call === call) call.cancel();
    });
    call.on('status', (status: grpc.StatusObject) => {
      const err = refusal ?? (status.code === 0 ? undefined : m.errorOfStatus(status, `publish stream to ${url}`));
      this.onStatus(call, err, refusal === undefined && PERMANENT_STATUS.has(status.code));
    });
    this.pump();
  }

  /** One answer; the refusal when the hub asked for the event to come again (it stays in flight). */
  private onAck(ack: WirePublishAck): HeraldError | undefined {
    const p = this.inFlight.get(ack.seq);
    if (!p) return undefined;
    const refused = ack.refused;
    if (refused && RETRIED.has(refused.code)) return new HeraldError(refused.code as ErrorCode, `the hub answered: ${refused.message}`);
    this.inFlight.delete(ack.seq);
    if (refused) {
      const code = (refused.code in ErrorCodes ? refused.code : ErrorCodes.PUBLISH_FAILED) as ErrorCode;
      this.settle(p, new HeraldError(code, refused.message || `the hub refused event ${p.id}`, { details: { id: p.id } }));
      return undefined;
    }
    const o = ack.stored ?? ack.duplicate;
    const offset = o?.offset === undefined || o?.offset === null ? undefined : BigInt(o.offset);
    this.settle(p, undefined, { id: p.id, offset, duplicate: ack.outcome === 'duplicate' });
    return undefined;
  }

  /** The stream ended: what it did not answer goes back in front, in publish order; reconnect with backoff. */
  private onStatus(call: Call, err: HeraldError | undefined, permanent: boolean): void {
    if (this.call === call) this.call = undefined;
    const back = [...this.inFlight.values()].filter((p) => !p.settled).sort((a, b) => a.order - b.order);
    this.inFlight = new Map();
    this.unsent = back.concat(this.unsent.filter((p) => !p.settled));
    if (this.closed) return;
    if (err) {
      if (permanent) {
        this.failAll(err);
        return;
      }
      try {
        this.s.onError?.(err);
      } catch {
        // A throwing error callback must not break the publisher.
      }
    }
    if (this.unsent.length === 0) return;
    this.at = (this.at + 1) % this.s.urls.length;
    const wait = Math.round(this.delay * (0.5 + Math.random() / 2));
    if (this.at === 0) this.delay = Math.min(this.delay * 2, this.s.reconnectMaxDelayMs);
    later(wait, () => this.pump());
  }

  /** Rejects everything admitted or waiting (a permanent failure of the stream: bad token, forbidden). */
  private failAll(err: HeraldError): void {
    const all = [...this.inFlight.values(), ...this.unsent, ...this.blocked];
    this.inFlight = new Map();
    this.unsent = [];
    for (const p of all) this.settle(p, err);
  }

  private sweep(): void {
    const now = Date.now();
    for (const p of [...this.inFlight.values(), ...this.unsent, ...this.blocked]) {
      if (!p.settled && p.deadline > 0 && p.deadline <= now)
        this.settle(
          p,
          new HeraldError(ErrorCodes.TIMEOUT, `event ${p.id} not answered within ${this.s.confirmTimeoutMs} ms`, { details: { id: p.id } }),
        );
    }
  }
}

/**
 * A publisher that sends to the hub's gRPC PublishStream instead of RabbitMQ's herald.ingest: the
 * hub stores each event itself and answers once it is in the log, so an event crosses RabbitMQ
 * once (to herald.events) or never (a gRPC subscriber). `publish` resolves with the event's id and,
 * when the hub knows it, its offset (`duplicate` when the log already held the id) and rejects with
 * the hub's refusal (INVALID_SENDER, FORBIDDEN, EVENT_TOO_LARGE, SCHEMA_VIOLATION, …), TIMEOUT after
 * `confirmTimeoutMs`, CLOSED after close(), or UNAUTHENTICATED / FORBIDDEN for every pending publish
 * when the hub refuses the stream itself. Pipelined: many publishes are in flight on one stream;
 * at most `maxPending` are admitted, further publishes wait in order for room.
 *
 * Reconnect: when the stream breaks (hub restart, network, a standby hub answering UNAVAILABLE) it
 * reconnects with backoff (to the next address when several are given) and sends again, in publish
 * order and with the same ids, every event not answered: the log stores an id once, so at least
 * once, never lost. gRPC is loaded at the first publish.
 */
export function createHubPublisher<E extends EventMap = AnyEvents>(options: HubPublisherOptions): HubPublisher<E> {
  return new HubPublisherImpl(options) as unknown as HubPublisher<E>;
}

function aborted(signal: AbortSignal, id: string | undefined): HeraldError {
  return new HeraldError(ErrorCodes.ABORTED, id ? `publish of event ${id} aborted` : 'publish aborted', {
    cause: signal.reason,
    details: id ? { id } : {},
  });
}
