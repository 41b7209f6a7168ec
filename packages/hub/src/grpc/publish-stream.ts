import type * as grpc from '@grpc/grpc-js';
import {
  ErrorCodes,
  HeraldError,
  type HeraldEvent,
  type WirePublishAck,
  type WirePublishRequest,
  type WirePublishStreamResponse,
} from '@herald/core';
import type { Logger } from 'pino';
import { amqpUsernameOf } from '../auth/amqp-permissions.ts';
import type { Auth } from '../auth/auth.ts';
import type { Principal } from '../auth/types.ts';
import type { DirectOutcome } from '../ingest/types.ts';
import type { BudgetClaimant, PublishBudget } from './publish-budget.ts';
import { eventOfRequest, Undecodable, undecodableStatus } from './requests.ts';
import { type GrpcStatus, heraldStatus, toGrpcStatus } from './status.ts';

export type { DirectOutcome };

/** Stores events directly in the log (in order, one transaction per call when it can), hands them to the dispatcher, and resolves once the transaction committed (not waiting for RabbitMQ). */
export type DirectAppend = (events: readonly HeraldEvent[], userId: string | undefined) => Promise<DirectOutcome[]>;

/** The bounds of one PublishStream (all streams together: PublishBudget). */
export const PUBLISH_STREAM_LIMITS = {
  /** Events in one request; more ends the stream (RESOURCE_EXHAUSTED). */
  eventsPerRequest: 1000,
  /** Events read and not answered yet: past it the hub reads no more of the stream until answers go out. */
  pendingEvents: 5000,
  /** The same in bytes of event bodies and headers. */
  pendingBytes: 32 * 1024 * 1024,
  /** Events in one append call; what arrived beyond waits for the next call. */
  eventsPerAppend: 2000,
} as const;

/** A PublishStreamRequest as the hub reads it: each event decoded on its own, so a garbled one is refused alone. */
export interface StreamRequest {
  readonly seq: bigint;
  readonly events: readonly (WirePublishRequest | Undecodable)[];
}

/** A request with more events than PUBLISH_STREAM_LIMITS.eventsPerRequest. */
export class TooManyEvents {
  constructor(readonly count: number) {}
}

/** The largest `seq` (uint64). */
export const MAX_U64 = (1n << 64n) - 1n;

/** A varint at `at` (within 2^53 for lengths and tags): [value, next position]. Throws when cut short. */
function varint(buf: Buffer, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const b = buf[at++];
    if (b === undefined) throw new Error('truncated varint');
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, at];
    scale *= 128;
  }
  throw new Error('varint longer than 10 bytes');
}

function bigVarint(buf: Buffer, at: number): [bigint, number] {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    const b = buf[at++];
    if (b === undefined) throw new Error('truncated varint');
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if (b < 0x80) return [value, at];
  }
  throw new Error('varint longer than 10 bytes');
}

/**
 * The decoder of PublishStreamRequest: reads the envelope (field 1 `seq`, field 2 one event each)
 * by hand and each event with `decodeEvent`, Publish's own decoder, so one event that is not valid
 * protobuf becomes an Undecodable in its place. Throws when the envelope itself does not decode.
 */
export function publishStreamDecoder(decodeEvent: (bytes: Buffer) => unknown): (bytes: Buffer) => StreamRequest | TooManyEvents {
  return (buf) => {
    let seq = 0n;
    const parts: Buffer[] = [];
    let at = 0;
    while (at < buf.length) {
      const [tag, next] = varint(buf, at);
      at = next;
      const field = Math.floor(tag / 8);
      const wire = tag % 8;
      if (field === 1 && wire === 0) {
        [seq, at] = bigVarint(buf, at);
        if (seq > MAX_U64) throw new Error('seq is past 2^64');
      } else if (wire === 0) {
        at = varint(buf, at)[1];
      } else if (wire === 1 || wire === 5) {
        at += wire === 1 ? 8 : 4;
      } else if (wire === 2) {
        const [length, start] = varint(buf, at);
        at = start + length;
        if (at > buf.length) throw new Error('length-delimited field cut short');
        if (field === 2) parts.push(buf.subarray(start, at));
      } else {
        throw new Error(`wire type ${wire} is not used by herald.v1`);
      }
      if (at > buf.length) throw new Error('field cut short');
    }
    if (parts.length > PUBLISH_STREAM_LIMITS.eventsPerRequest) return new TooManyEvents(parts.length);
    const events = parts.map((p) => {
      try {
        return decodeEvent(p) as WirePublishRequest;
      } catch (err) {
        return new Undecodable(err instanceof Error ? err.message : String(err));
      }
    });
    return { seq, events };
  };
}

/** One event read from a stream, waiting for its answer. */
interface Item {
  readonly seq: bigint;
  readonly id: string;
  readonly event: HeraldEvent | undefined;
  readonly refused: HeraldError | undefined;
  readonly bytes: number;
}

/** What a PublishStream needs of the server. */
export interface PublishStreamContext {
  readonly append: DirectAppend;
  readonly auth: Auth;
  readonly logger: Logger;
  readonly maxEventBytes: number;
  /**
   * The room all streams of the hub share for the events they read and have not answered
   * (HERALD_PUBLISH_MAX_BYTES, HERALD_PUBLISH_MAX_EVENTS): one per server.
   */
  readonly budget: PublishBudget;
}

type PublishCall = grpc.ServerDuplexStream<StreamRequest | TooManyEvents | Undecodable, WirePublishStreamResponse>;

/**
 * Refusals that are the hub's trouble (the client sends the event again): the stream ends after
 * answering one, and the events read after it are not answered, so they go again in order.
 */
const SEND_AGAIN = new Set<string>([ErrorCodes.UNAVAILABLE, ErrorCodes.CLOSED]);

/** Longest `message` of a refusal. */
const MAX_REFUSAL_CHARS = 500;

/** Bytes an event holds in memory, near enough to bound a stream by. */
function sizeOf(r: WirePublishRequest): number {
  let n = 256 + (r.data?.length ?? 0);
  for (const k in r.headers) n += k.length + (r.headers[k]?.length ?? 0);
  return n;
}

/**
 * One PublishStream: decodes and checks each event as Publish does, hands what arrived together to
 * `append` (one call at a time, so the stream's order is the log's), and answers each sequence
 * number once its call resolved; after a refusal to send again (SEND_AGAIN) it ends the stream
 * UNAVAILABLE, leaving what it read after unanswered. Reading stops while too much of this stream waits
 * (PUBLISH_STREAM_LIMITS), while the events it read find no room in the hub's budget (held back,
 * in order, until answers of any stream free some), and while the client does not read the answers.
 */
export class PublishSession {
  private principal: Principal;
  /** Read and not yet given room in the hub's budget, in order. */
  private readonly held: Item[] = [];
  /** Given room, waiting for the next append. */
  private readonly queue: Item[] = [];
  /** Read and not answered: held, queued and in the append in flight. */
  private pendingEvents = 0;
  private pendingBytes = 0;
  private appending: Promise<void> | undefined;
  private scheduled = false;
  private paused = false;
  private writeBlocked = false;
  private ended = false;
  /** Set by end(): the status the stream ends with once the append in flight is answered. */
  private ending: GrpcStatus | undefined;
  private done = false;
  private readonly unwatch: () => void;
  private readonly peer: string;
  private readonly budget: PublishBudget;
  private readonly claimant: BudgetClaimant = { admit: (take) => this.admit(take) };

  constructor(
    private readonly call: PublishCall,
    private readonly ctx: PublishStreamContext,
    principal: Principal,
    private readonly onDone: () => void,
  ) {
    this.principal = principal;
    this.peer = call.getPeer();
    this.budget = ctx.budget;
    // Revoking the token ends the stream; changed roles apply to the next events.
    this.unwatch = ctx.auth.watch(
      principal,
      (p) => {
        this.principal = p;
      },
      (err) => void this.end(toGrpcStatus(err)),
    );
    call.on('data', (m: StreamRequest | TooManyEvents | Undecodable) => this.onMessage(m));
    call.on('end', () => {
      this.ended = true;
      this.finishIfIdle();
    });
    call.on('cancelled', () => this.close());
    call.on('error', () => this.close());
    call.on('drain', () => {
      this.writeBlocked = false;
      this.adjustReading();
    });
  }

  /** Ends the stream with `status`: the append in flight is answered first, what was not appended is not (the client sends it again). */
  async end(status: GrpcStatus): Promise<void> {
    if (this.done || this.ending) return;
    this.ending = status;
    this.ended = true;
    this.dropUnsent();
    this.adjustReading();
    await this.appending;
    if (this.done) return;
    this.close();
    this.call.emit('error', status);
  }

  private close(): void {
    if (this.done) return;
    this.done = true;
    this.unwatch();
    this.dropUnsent();
    this.ctx.logger.debug({ peer: this.peer }, 'grpc publish stream ended');
    this.onDone();
  }

  private onMessage(m: StreamRequest | TooManyEvents | Undecodable): void {
    if (this.done || this.ended) return;
    if (m instanceof Undecodable) {
      void this.end(undecodableStatus('PublishStreamRequest', m));
      return;
    }
    if (m instanceof TooManyEvents) {
      const limit = PUBLISH_STREAM_LIMITS.eventsPerRequest;
      void this.end(heraldStatus(ErrorCodes.LIMIT_EXCEEDED, `a PublishStreamRequest carries at most ${limit} events (got ${m.count})`));
      return;
    }
    if (m.seq + BigInt(m.events.length) - 1n > MAX_U64) {
      void this.end(heraldStatus(ErrorCodes.INVALID_REQUEST, 'the sequence numbers of the request pass 2^64 - 1'));
      return;
    }
    m.events.forEach((r, i) => {
      const item = this.itemOf(m.seq + BigInt(i), r);
      this.pendingEvents += 1;
      this.pendingBytes += item.bytes;
      this.held.push(item);
    });
    this.budget.claim(this.claimant);
    this.adjustReading();
  }

  /** Moves what fits in the hub's budget from `held` to the queue, in order; true once nothing is held. */
  private admit(take: (bytes: number) => boolean): boolean {
    let n = 0;
    while (n < this.held.length && take((this.held[n] as Item).bytes)) n++;
    if (n > 0) {
      for (const item of this.held.splice(0, n)) this.queue.push(item);
      this.schedule();
      this.adjustReading();
    }
    return this.held.length === 0;
  }

  /** What was not appended is not answered (the client sends it again): its room goes back to the budget. */
  private dropUnsent(): void {
    let bytes = 0;
    for (const item of this.queue) bytes += item.bytes;
    const events = this.queue.length;
    this.queue.length = 0;
    this.held.length = 0;
    this.budget.leave(this.claimant);
    if (events > 0) this.budget.release(bytes, events);
  }

  /** Checks one event as Publish does: who may send it, then the envelope. */
  private itemOf(seq: bigint, r: WirePublishRequest | Undecodable): Item {
    if (r instanceof Undecodable) {
      const refused = new HeraldError(ErrorCodes.INVALID_REQUEST, undecodableStatus('PublishRequest', r).details);
      return { seq, id: '', event: undefined, refused, bytes: 64 };
    }
    const bytes = sizeOf(r);
    try {
      this.ctx.auth.assertPublish(this.principal, r.sender);
      const event = eventOfRequest(r, this.ctx.maxEventBytes);
      return { seq, id: event.id, event, refused: undefined, bytes };
    } catch (err) {
      const refused = err instanceof HeraldError ? err : new HeraldError(ErrorCodes.INVALID_REQUEST, String(err));
      return { seq, id: typeof r.id === 'string' ? r.id.slice(0, 64) : '', event: undefined, refused, bytes };
    }
  }

  /** Reads while what waits is within bounds, has room in the budget, and the client reads its answers; otherwise lets HTTP/2 flow control hold the client. */
  private adjustReading(): void {
    if (this.done) return;
    const full =
      this.ending !== undefined ||
      this.writeBlocked ||
      this.held.length > 0 ||
      this.pendingEvents >= PUBLISH_STREAM_LIMITS.pendingEvents ||
      this.pendingBytes >= PUBLISH_STREAM_LIMITS.pendingBytes;
    if (full && !this.paused) {
      this.paused = true;
      this.call.pause();
    } else if (!full && this.paused) {
      this.paused = false;
      this.call.resume();
    }
  }

  /** What arrives in one turn goes to one append. */
  private schedule(): void {
    if (this.scheduled || this.appending || this.queue.length === 0 || this.done) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.appending || this.queue.length === 0 || this.done) return;
      this.appending = this.appendQueued().finally(() => {
        this.appending = undefined;
        this.schedule();
        this.finishIfIdle();
      });
    });
  }

  private async appendQueued(): Promise<void> {
    const items = this.queue.splice(0, PUBLISH_STREAM_LIMITS.eventsPerAppend);
    const events: HeraldEvent[] = [];
    for (const item of items) if (item.event) events.push(item.event);
    const principal = this.principal;
    // The catalog names producers by the RabbitMQ user they publish as, on every path.
    const userId = principal.kind === 'user' ? amqpUsernameOf(principal.user.name) : undefined;
    let outcomes: DirectOutcome[] = [];
    if (events.length > 0) {
      try {
        outcomes = await this.ctx.append(events, userId);
        if (outcomes.length !== events.length) throw new Error(`append answered ${outcomes.length} outcomes for ${events.length} events`);
      } catch (err) {
        const error =
          err instanceof HeraldError ? err : new HeraldError(ErrorCodes.UNAVAILABLE, `internal error: ${String(err)}`, { cause: err });
        if (!(err instanceof HeraldError)) this.ctx.logger.error({ err, peer: this.peer }, 'grpc publish stream: append failed');
        outcomes = events.map(() => ({ error }));
      }
    }
    const acks: WirePublishAck[] = [];
    let next = 0;
    let bytes = 0;
    let again: HeraldError | undefined;
    for (const item of items) {
      this.pendingEvents -= 1;
      this.pendingBytes -= item.bytes;
      bytes += item.bytes;
      const outcome: DirectOutcome = item.event ? (outcomes[next++] as DirectOutcome) : { error: item.refused as HeraldError };
      if (item.event && 'error' in outcome && SEND_AGAIN.has(outcome.error.code)) again ??= outcome.error;
      acks.push(ackOf(item, outcome));
    }
    if (!this.done && !this.call.write({ acks })) this.writeBlocked = true;
    this.adjustReading();
    // The answers are out (or the stream is gone): their room goes to the streams in line.
    this.budget.release(bytes, items.length);
    // Storing what was read after an event to be sent again would put it in the log before that one.
    if (again) void this.end(heraldStatus(ErrorCodes.UNAVAILABLE, again.message));
  }

  /** The client half-closed and everything it sent is answered: OK. */
  private finishIfIdle(): void {
    if (!this.ended || this.ending || this.done || this.appending || this.scheduled || this.queue.length > 0 || this.held.length > 0)
      return;
    this.close();
    this.call.end();
  }
}

function ackOf(item: Item, outcome: DirectOutcome): WirePublishAck {
  const seq = item.seq.toString();
  if ('error' in outcome) {
    const message = outcome.error.message;
    return {
      seq,
      id: item.id,
      refused: {
        code: outcome.error.code,
        message: message.length > MAX_REFUSAL_CHARS ? `${message.slice(0, MAX_REFUSAL_CHARS)}…` : message,
      },
    };
  }
  const offset = outcome.offset === undefined ? {} : { offset: outcome.offset.toString() };
  return outcome.duplicate ? { seq, id: item.id, duplicate: offset } : { seq, id: item.id, stored: offset };
}
