import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  DEFAULT_MAX_EVENT_BYTES,
  ErrorCodes,
  GRPC_SERVICE,
  HeraldError,
  type HeraldEvent,
  LIMITS,
  PROTO_LOADER_OPTIONS,
  PROTO_PATH,
  parseOffset,
  toWireEvent,
  type WireEvent,
  type WireOpen,
  type WirePublishRequest,
  type WirePublishResponse,
  type WireStart,
  type WireSubscribeRequest,
  type WireSubscribeResponse,
} from '@herald/core';
import type { Logger } from 'pino';
import { Auth } from '../auth/auth.ts';
import type { Principal } from '../auth/types.ts';
import { CAPS, capReached } from '../caps/index.ts';
import { assertSubscriptionName } from '../subscriptions/start-position.ts';
import type { Consumer, DeliveredEvent, SubscriptionManager } from '../subscriptions/types.ts';
import { DEFAULT_PUBLISH_BUDGET_LIMITS, PublishBudget, type PublishBudgetLimits } from './publish-budget.ts';
import { type DirectAppend, PublishSession, publishStreamDecoder } from './publish-stream.ts';
import { eventOfRequest, principalOfCall, tolerantDecoding, Undecodable, undecodableStatus } from './requests.ts';
import { type GrpcStatus, heraldStatus, toGrpcStatus } from './status.ts';

/** What the gRPC server needs from the hub. */
export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The manager; undefined on a standby hub, in archive mode, or while stopping (UNAVAILABLE / FAILED_PRECONDITION). */
  manager: () => SubscriptionManager | undefined;
  /** Publishes to herald.ingest and resolves once RabbitMQ confirmed it. */
  publish: (event: HeraldEvent) => Promise<void>;
  /** Stores events of PublishStream in the log; without it PublishStream answers UNIMPLEMENTED. */
  append?: DirectAppend | undefined;
  logger: Logger;
  /**
   * Largest event body a Publish may carry (HERALD_MAX_EVENT_BYTES). A message past it plus the
   * envelope is refused by grpc-js before it is parsed (RESOURCE_EXHAUSTED); one within the
   * envelope's room is refused by the envelope check (INVALID_ARGUMENT, EVENT_TOO_LARGE).
   * Default 1 MiB.
   */
  maxEventBytes?: number | undefined;
  /** Concurrent Subscribe and PublishStream streams (HERALD_MAX_GRPC_STREAMS); the next ends with RESOURCE_EXHAUSTED. Default 1000. */
  maxStreams?: number | undefined;
  /** What every PublishStream together may hold unanswered (HERALD_PUBLISH_MAX_BYTES, _EVENTS). Default BUDGETS'. */
  publishBudget?: PublishBudgetLimits | undefined;
  /** Authentication (metadata `authorization: Bearer <token>`) and the access rules. Default: off, every call allowed. */
  auth?: Auth | undefined;
}

/** The `herald.v1.Herald` service. */
export interface GrpcServer {
  /** Binds and serves; resolves with the bound port. Rejects UNAVAILABLE naming the address when it cannot bind. */
  start(): Promise<{ port: number }>;
  /** Ends open streams (consumers detach, their subscriptions sleep) and stops. Idempotent. */
  stop(): Promise<void>;
}

/** Events asked of the consumer per round; it also caps them at what max-in-flight leaves room for. */
const NEXT_MAX = 1000;
/** One `events` message carries at most this many events … */
const BATCH_EVENTS = 200;
/** … and at most about this many bytes of events as encoded (a single larger event goes alone). */
const BATCH_BYTES = 512 * 1024;
/**
 * Room for everything of one event but its body, as protobuf encodes it: the headers (with the
 * subject and causation id, within LIMITS.headerTableBytes as AMQP encodes them, which costs more
 * per entry than protobuf), the other short strings (ids, sender, type, content type, each within
 * 255 bytes) and the fixed fields, with room to spare.
 */
const ENVELOPE_BYTES = LIMITS.headerTableBytes.value + 64 * 1024;
/** Fixed fields and protobuf framing of one event: offset, times, tags and lengths. */
const EVENT_FRAMING_BYTES = 64;
/** stop(): how long open calls get to finish before they are cut. */
const SHUTDOWN_GRACE_MS = 5000;

/**
 * Keepalive: the server pings a connection idle for 30 s and drops it when no answer comes within
 * 10 s, so a consumer whose host died or whose network vanished is detached (its subscription
 * sleeps, or its standby takes over) within ~40 s instead of at the next TCP timeout. Clients may
 * ping every 10 s (the SDK pings every 20 s).
 */
const KEEPALIVE_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  'grpc.http2.max_ping_strikes': 5,
};

/**
 * Message sizes: what the server takes is one Publish of the largest event with its envelope
 * (Subscribe's open and acks are far smaller), so grpc-js refuses anything bigger before it is
 * buffered whole or parsed. What it sends is one `events` message as batches() cuts them: up to
 * BATCH_BYTES, or one event alone with its envelope. The SDK's client takes up to 64 MiB.
 */
export function grpcServerOptions(maxEventBytes: number): grpc.ChannelOptions {
  return {
    ...KEEPALIVE_OPTIONS,
    'grpc.max_receive_message_length': maxEventBytes + ENVELOPE_BYTES,
    'grpc.max_send_message_length': Math.max(BATCH_BYTES, maxEventBytes) + ENVELOPE_BYTES + BATCH_EVENTS * EVENT_FRAMING_BYTES,
  };
}

/** Bytes of one event as an `events` message carries it, near enough to cut batches by. */
function wireBytes(e: DeliveredEvent): number {
  let n = e.data.length + EVENT_FRAMING_BYTES + e.id.length + e.sender.length + e.type.length + e.contentType.length;
  // Strings are counted in UTF-16 units times 3, the most UTF-8 can take for one: an overestimate
  // only makes a batch smaller, never one larger than the send limit.
  const text = (v: string | undefined) => (v === undefined ? 0 : v.length * 3 + 8);
  n += text(e.subject) + text(e.correlationId) + text(e.causationId) + text(e.replay) + text(e.traceparent) + text(e.tracestate);
  for (const k in e.headers) n += text(k) + text(e.headers[k]);
  return n;
}

/** The manager's JSON form of a start position, from the wire's oneof; undefined = resume (or `new` when created). */
function startOf(start: WireStart | null | undefined): unknown {
  switch (start?.position) {
    case 'new':
      return 'new';
    case 'earliest':
      return 'earliest';
    case 'offset':
      return { offset: parseOffset('start.offset', String(start.offset ?? '0')) };
    case 'timeMs':
      // A number, read by the same rule as REST's {"time"}: the manager refuses what is out of range.
      return { time: Number(start.timeMs) };
    case 'last':
      return { last: start.last ?? 0 };
    default:
      return undefined;
  }
}

/** Splits what one next() returned into small messages. */
function* batches(events: readonly DeliveredEvent[]): Generator<WireEvent[]> {
  let batch: WireEvent[] = [];
  let bytes = 0;
  for (const e of events) {
    // Headers count too: 200 small bodies with 60 KiB of headers each would otherwise make one
    // message of 12 MB, past the send limit, and the stream would fail on the same batch forever.
    const size = wireBytes(e);
    if (batch.length > 0 && (batch.length >= BATCH_EVENTS || bytes + size > BATCH_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(toWireEvent(e));
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

type SubscribeCall = grpc.ServerDuplexStream<WireSubscribeRequest, WireSubscribeResponse>;

/**
 * One Subscribe stream: open → attach → (standby) → active → opened → events while acks come up.
 * Whatever ends it (the client ending or cancelling, a bad message, the hub ending the consumer,
 * stop()) closes the consumer first, so the acknowledged offset is saved before the status goes out.
 */
class SubscribeSession {
  private consumer: Consumer | undefined;
  private opened = false;
  private done = false;
  private unwatch: () => void = () => {};
  private cancelled = false;
  private readonly abort = new AbortController();
  private readonly peer: string;

  constructor(
    private readonly call: SubscribeCall,
    private readonly options: GrpcServerOptions,
    private readonly auth: Auth,
    private readonly principal: Principal,
    private readonly onDone: () => void,
  ) {
    this.peer = call.getPeer();
    call.on('data', (m: WireSubscribeRequest | Undecodable) => this.onMessage(m));
    // The client half-closed: it has sent its last ack. Detach and answer OK.
    call.on('end', () => void this.end(undefined));
    call.on('cancelled', () => {
      this.cancelled = true;
      void this.end(undefined);
    });
    call.on('error', () => {
      // Our own emit('error', status) lands here too; either way the session is over.
      void this.end(undefined);
    });
  }

  /** Ends the stream (idempotent): detach, then the status (OK when `status` is undefined). */
  async end(status: GrpcStatus | undefined): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.unwatch();
    this.abort.abort();
    const consumer = this.consumer;
    if (consumer) {
      await consumer
        .close()
        .catch((err: unknown) => this.options.logger.warn({ err: String(err), peer: this.peer }, 'consumer close failed'));
    }
    if (!this.cancelled) {
      if (status) this.call.emit('error', status);
      else this.call.end();
    }
    this.options.logger.debug(
      { subscription: consumer?.name, peer: this.peer, status: status?.details ?? 'OK' },
      'grpc subscribe stream ended',
    );
    this.onDone();
  }

  private onMessage(m: WireSubscribeRequest | Undecodable): void {
    if (this.done) return;
    if (m instanceof Undecodable) {
      void this.end(undecodableStatus('SubscribeRequest', m));
      return;
    }
    if (m.kind === 'open' && m.open) {
      if (this.opened) {
        void this.end(heraldStatus(ErrorCodes.INVALID_REQUEST, 'open was sent twice: one stream serves one subscription'));
        return;
      }
      this.opened = true;
      this.run(m.open).catch((err: unknown) => this.fail(err));
      return;
    }
    if (m.kind === 'ack' && m.ack) {
      if (!this.consumer) {
        void this.end(heraldStatus(ErrorCodes.INVALID_REQUEST, 'ack before the subscription was opened'));
        return;
      }
      try {
        this.consumer.ack(parseOffset('ack.offset', String(m.ack.offset)));
      } catch (err) {
        this.fail(err);
      }
      return;
    }
    void this.end(heraldStatus(ErrorCodes.INVALID_REQUEST, 'the first message must be open, later ones ack'));
  }

  private fail(err: unknown): void {
    const status = toGrpcStatus(err);
    if (status.internal) this.options.logger.error({ err, peer: this.peer }, 'grpc subscribe failed');
    void this.end(status);
  }

  private async run(open: WireOpen): Promise<void> {
    const manager = this.options.manager();
    if (!manager) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'this hub does not serve subscriptions right now');
    // The subscription must be the caller's (or new, then it becomes the caller's), inside its selectors.
    assertSubscriptionName(open.name);
    const existing = manager.selectorOf(open.name);
    const asked = open.selector.length > 0 ? open.selector : undefined;
    if (existing) await this.auth.assertSubscription(this.principal, open.name, existing, { create: false });
    if (asked !== undefined) this.auth.assertRead(this.principal, asked);
    if (!existing && asked !== undefined) await this.auth.assertSubscription(this.principal, open.name, asked, { create: true });
    // The stream ends when its token is revoked, or its user's roles no longer allow it: watched
    // from before the attach, so a change while it attaches is not missed.
    this.unwatch = this.auth.watch(
      this.principal,
      (p) => this.auth.assertSubscription(p, open.name, manager.selectorOf(open.name) ?? asked ?? '*:*', { create: false }),
      (err) => this.fail(err),
    );
    const consumer = await manager
      .attach({
        name: open.name,
        selector: open.selector.length > 0 ? open.selector : undefined,
        start: startOf(open.start),
        maxInFlight: open.maxInFlight > 0 ? open.maxInFlight : undefined,
        consumer: `grpc ${this.peer}`,
      })
      .catch(async (err: unknown) => {
        // A name claimed for a subscription that was not created is free again.
        if (!existing && !manager.selectorOf(open.name)) await this.auth.forget(open.name).catch(() => undefined);
        throw err;
      });
    this.consumer = consumer;
    if (this.done) {
      // The client went away while we attached.
      this.unwatch();
      await consumer.close();
      return;
    }
    consumer.ended.then(
      (reason) => void this.end(this.endedStatus(reason)),
      () => undefined,
    );
    const aborted = new Promise<void>((resolve) => this.abort.signal.addEventListener('abort', () => resolve(), { once: true }));
    // A standby waits here until the active consumer goes.
    await Promise.race([consumer.active, aborted]);
    if (this.done) return;
    const view = await manager.get(open.name);
    if (this.done) return;
    this.options.logger.debug({ subscription: open.name, peer: this.peer }, 'grpc subscribe stream active');
    await this.send({ opened: { subscription: open.name, ackedOffset: (view?.ackedOffset ?? 0n).toString(), state: 'active' } });
    const signal = this.abort.signal;
    while (!this.done) {
      const events = await consumer.next(NEXT_MAX, signal);
      if (this.done) return;
      if (events.length === 0) {
        // Only an abort should return nothing; do not spin if the manager ever does otherwise.
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      for (const batch of batches(events)) {
        await this.send({ events: { events: batch } });
        if (this.done) return;
      }
    }
  }

  /** Writes one message, waiting for 'drain' when the client reads slower than we send. */
  private async send(message: WireSubscribeResponse): Promise<void> {
    if (this.done) return;
    if (this.call.write(message)) return;
    try {
      await once(this.call, 'drain', { signal: this.abort.signal });
    } catch {
      // Aborted: the session is ending.
    }
  }

  /** How the stream ends when the hub ends the consumer (deleted, hub stopping, taken over). */
  private endedStatus(reason: string): GrpcStatus {
    if (/delet/i.test(reason)) return heraldStatus(ErrorCodes.NOT_FOUND, `subscription ${this.consumer?.name}: ${reason}`);
    return heraldStatus(ErrorCodes.UNAVAILABLE, `subscription ${this.consumer?.name}: ${reason}`);
  }
}

/**
 * The gRPC API `herald.v1.Herald` (packages/core/proto/herald/v1/herald.proto): Publish, and
 * Subscribe as a bidirectional stream over the subscription manager. Errors end calls with the
 * statuses of ./status.ts. When the manager is absent (a standby hub, archive mode) Subscribe
 * answers UNAVAILABLE, so SDK clients keep retrying until a hub serves them.
 */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { logger } = options;
  const maxEventBytes = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  const maxStreams = options.maxStreams ?? CAPS.grpcStreams.default;
  const budget = new PublishBudget(options.publishBudget ?? DEFAULT_PUBLISH_BUDGET_LIMITS);
  const sessions = new Set<SubscribeSession>();
  const publishSessions = new Set<PublishSession>();
  let server: grpc.Server | undefined;
  let stopping: Promise<void> | undefined;

  const auth = options.auth ?? new Auth({ enabled: false });

  const publish: grpc.handleUnaryCall<WirePublishRequest, WirePublishResponse> = (call, callback) => {
    // Credentials first: a call without them learns nothing but UNAUTHENTICATED.
    principalOfCall(auth, call).then(
      (principal) => publishAs(principal, call, callback),
      (err: unknown) => callback(toGrpcStatus(err)),
    );
  };

  const publishAs = (
    principal: Principal,
    call: grpc.ServerUnaryCall<WirePublishRequest, WirePublishResponse>,
    callback: grpc.sendUnaryData<WirePublishResponse>,
  ): void => {
    const r: WirePublishRequest | Undecodable = call.request;
    if (r instanceof Undecodable) {
      callback(undecodableStatus('PublishRequest', r));
      return;
    }
    let event: HeraldEvent;
    try {
      auth.assertPublish(principal, r.sender);
      event = eventOfRequest(r, maxEventBytes);
    } catch (err) {
      callback(toGrpcStatus(err));
      return;
    }
    options.publish(event).then(
      () => callback(null, { id: event.id }),
      (err: unknown) => {
        const status = toGrpcStatus(err);
        if (status.internal) logger.error({ err }, 'grpc publish failed');
        callback(status);
      },
    );
  };

  /**
   * Admits a stream: refused when stopping or at the stream cap (each stream holds a session and
   * its window of events: past the cap, refuse rather than let clients grow the hub's memory;
   * RESOURCE_EXHAUSTED, LIMIT_EXCEEDED: a retry later may fit, and the SDK retries with backoff).
   * Credentials first: until they are checked no message of the stream is read (it waits, buffered).
   */
  const admit = (call: grpc.ServerDuplexStream<unknown, unknown>, kind: string, open: (principal: Principal) => void): void => {
    if (stopping) {
      call.emit('error', heraldStatus(ErrorCodes.UNAVAILABLE, 'the hub is stopping'));
      return;
    }
    if (sessions.size + publishSessions.size >= maxStreams) {
      call.emit('error', toGrpcStatus(capReached('grpcStreams', maxStreams)));
      logger.warn({ peer: call.getPeer(), maxStreams }, `grpc ${kind} refused: stream cap reached`);
      return;
    }
    principalOfCall(auth, call).then(
      (principal) => {
        if (stopping) call.emit('error', heraldStatus(ErrorCodes.UNAVAILABLE, 'the hub is stopping'));
        else open(principal);
      },
      (err: unknown) => call.emit('error', toGrpcStatus(err)),
    );
  };

  const subscribe: grpc.handleBidiStreamingCall<WireSubscribeRequest, WireSubscribeResponse> = (call) =>
    admit(call as never, 'subscribe', (principal) => {
      const session: SubscribeSession = new SubscribeSession(call, options, auth, principal, () => sessions.delete(session));
      sessions.add(session);
    });

  /** PublishStream: refused like Subscribe when stopping or at the stream cap, then a PublishSession. */
  const publishStream: grpc.handleBidiStreamingCall<unknown, unknown> = (call) => {
    const append = options.append;
    if (!append) {
      call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'this hub does not take PublishStream' });
      return;
    }
    admit(call, 'publish stream', (principal) => {
      const ctx = { append, auth, logger, maxEventBytes, budget };
      const session: PublishSession = new PublishSession(call as never, ctx, principal, () => publishSessions.delete(session));
      publishSessions.add(session);
    });
  };

  return {
    async start() {
      const definition = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
      const service = definition[GRPC_SERVICE] as grpc.ServiceDefinition;
      const s = new grpc.Server(grpcServerOptions(maxEventBytes));
      const decoders = {
        PublishStream: publishStreamDecoder((service.Publish as grpc.MethodDefinition<unknown, unknown>).requestDeserialize),
      };
      s.addService(tolerantDecoding(service, decoders), { publish, subscribe, publishStream } as grpc.UntypedServiceImplementation);
      const host = options.host.includes(':') && !options.host.startsWith('[') ? `[${options.host}]` : options.host;
      const address = `${host}:${options.port}`;
      const port = await new Promise<number>((resolve, reject) => {
        s.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => {
          if (err) reject(new HeraldError(ErrorCodes.UNAVAILABLE, `cannot serve gRPC on ${address}: ${err.message}`, { cause: err }));
          else resolve(bound);
        });
      });
      server = s;
      logger.debug({ grpc: `${host}:${port}` }, 'grpc listening');
      return { port };
    },
    stop() {
      stopping ??= (async () => {
        const s = server;
        // Detach every consumer first (their subscriptions sleep with their acked offsets), then let
        // the clients see UNAVAILABLE and reconnect elsewhere or later.
        const gone = heraldStatus(ErrorCodes.UNAVAILABLE, 'the hub is stopping');
        await Promise.all([...sessions, ...publishSessions].map((x) => x.end(gone)));
        if (!s) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            s.forceShutdown();
            resolve();
          }, SHUTDOWN_GRACE_MS);
          s.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      })();
      return stopping;
    },
  };
}
