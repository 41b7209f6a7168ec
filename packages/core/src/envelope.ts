import { ErrorCodes, ValidationError } from './errors.ts';
import { assertSender, assertType, parseRoutingKey } from './names.ts';
import { isUuid, uuidv7 } from './uuid.ts';

/** The exchange publishers send to, in every mode. */
export const INGEST_EXCHANGE = 'herald.ingest';
/** The exchange delivered events come from; receivers bind their own queues here. */
export const EVENTS_EXCHANGE = 'herald.events';
/** The exchange and queue of dead letters. */
export const DEAD_EXCHANGE = 'herald.dead';
export const DEAD_QUEUE = 'herald.dead';

/** AMQP headers of the wire contract (DESIGN.md §2). */
export const Headers = {
  /** Event time, epoch milliseconds. */
  TIME: 'x-herald-time',
  /** The event's offset in the log, added by the hub on delivery. */
  OFFSET: 'x-herald-offset',
  /** The replay id, on replayed deliveries. */
  REPLAY: 'x-herald-replay',
  SUBJECT: 'x-herald-subject',
  CAUSATION_ID: 'x-herald-causation-id',
  /** On a dead letter: why it is dead. */
  DEAD_REASON: 'x-herald-dead-reason',
  /** On a dead letter: the error code. */
  DEAD_CODE: 'x-herald-dead-code',
  /** On a dead letter: how many handler attempts were made. */
  ATTEMPTS: 'x-herald-attempts',
  /** On a dead letter: the exchange and routing key it was first published with. */
  ORIGINAL_EXCHANGE: 'x-herald-original-exchange',
  ORIGINAL_ROUTING_KEY: 'x-herald-original-routing-key',
} as const;

export const DEFAULT_CONTENT_TYPE = 'application/json';
/** The default limit on an event body: 1 MiB. */
export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024;

/** One immutable fact. Field names follow CloudEvents 1.0 (`sender` ↔ `source`). */
export interface HeraldEvent {
  /** UUID (v7 preferred); the idempotency key. */
  readonly id: string;
  readonly sender: string;
  readonly type: string;
  /** Event time, epoch milliseconds. */
  readonly time: number;
  /** The body, byte for byte. */
  readonly data: Buffer;
  readonly contentType: string;
  readonly subject?: string | undefined;
  readonly correlationId?: string | undefined;
  readonly causationId?: string | undefined;
  /** Extra headers, carried through as is (the x-herald-* headers of the contract are not here). */
  readonly headers: Readonly<Record<string, string>>;
}

/** An event as read from the broker or the log, with the hub's marks. */
export interface DeliveredEvent extends HeraldEvent {
  /** The event's offset in the log; present on everything the hub delivers in router mode. */
  readonly offset?: bigint | undefined;
  /** The replay id, on replayed deliveries. */
  readonly replay?: string | undefined;
}

/** The AMQP message properties Herald reads and writes (a subset of amqplib's). */
export interface AmqpProperties {
  messageId?: string | undefined;
  appId?: string | undefined;
  type?: string | undefined;
  timestamp?: number | undefined;
  contentType?: string | undefined;
  correlationId?: string | undefined;
  userId?: string | undefined;
  deliveryMode?: number | undefined;
  headers?: Record<string, unknown> | undefined;
}

/** What a publisher passes to make an event; the rest is filled in. */
export interface EventInit {
  sender: string;
  type: string;
  /** A Buffer is sent as is; a string as UTF-8; anything else as JSON. */
  data?: unknown;
  id?: string | undefined;
  /** A Date or epoch milliseconds. Default: now. */
  time?: Date | number | undefined;
  /** Default `application/json` (`application/octet-stream` for a Buffer, `text/plain` for a string). */
  contentType?: string | undefined;
  subject?: string | undefined;
  correlationId?: string | undefined;
  causationId?: string | undefined;
  headers?: Record<string, string> | undefined;
}

function invalid(message: string, details: Record<string, unknown> = {}): never {
  throw new ValidationError(ErrorCodes.INVALID_EVENT, message, { details });
}

function encodeData(data: unknown): { bytes: Buffer; contentType: string } {
  if (Buffer.isBuffer(data)) return { bytes: data, contentType: 'application/octet-stream' };
  if (data instanceof Uint8Array) return { bytes: Buffer.from(data), contentType: 'application/octet-stream' };
  if (typeof data === 'string') return { bytes: Buffer.from(data, 'utf8'), contentType: 'text/plain' };
  const json = JSON.stringify(data === undefined ? null : data);
  return { bytes: Buffer.from(json, 'utf8'), contentType: DEFAULT_CONTENT_TYPE };
}

function toTime(time: Date | number | undefined): number {
  if (time === undefined) return Date.now();
  const ms = time instanceof Date ? time.getTime() : time;
  if (!Number.isFinite(ms) || ms < 0) invalid(`invalid event time ${String(time)}: expected a Date or epoch milliseconds`, { time });
  return Math.trunc(ms);
}

/**
 * Builds and validates an event. Throws a ValidationError naming the bad field (sender, type, id,
 * time, size). `maxBytes` defaults to 1 MiB.
 */
export function createEvent(init: EventInit, options: { maxBytes?: number } = {}): HeraldEvent {
  assertSender(init.sender);
  assertType(init.type, init.sender);
  if (init.id !== undefined && !isUuid(init.id)) invalid(`invalid event id ${JSON.stringify(init.id)}: expected a UUID`, { id: init.id });
  const { bytes, contentType } = encodeData(init.data);
  assertSize(bytes.length, options.maxBytes ?? DEFAULT_MAX_EVENT_BYTES);
  return {
    id: init.id ?? uuidv7(),
    sender: init.sender,
    type: init.type,
    time: toTime(init.time),
    data: bytes,
    contentType: init.contentType ?? contentType,
    subject: init.subject,
    correlationId: init.correlationId,
    causationId: init.causationId,
    headers: { ...(init.headers ?? {}) },
  };
}

/** Throws EVENT_TOO_LARGE when a body of `size` bytes exceeds `maxBytes`. */
export function assertSize(size: number, maxBytes: number): void {
  if (size > maxBytes) {
    throw new ValidationError(ErrorCodes.EVENT_TOO_LARGE, `event body of ${size} bytes exceeds the limit of ${maxBytes} bytes`, {
      details: { size, maxBytes },
    });
  }
}

/** The AMQP publish of an event: routing key, body and properties, per DESIGN.md §2. */
export function toAmqp(
  event: HeraldEvent,
  extra: { userId?: string | undefined; offset?: bigint | undefined; replay?: string | undefined } = {},
): { routingKey: string; content: Buffer; properties: AmqpProperties } {
  const headers: Record<string, unknown> = { ...event.headers, [Headers.TIME]: event.time };
  if (event.subject !== undefined) headers[Headers.SUBJECT] = event.subject;
  if (event.causationId !== undefined) headers[Headers.CAUSATION_ID] = event.causationId;
  // Offsets travel as decimal strings: a signed 64-bit header would lose nothing either, but
  // strings read the same in every client library.
  if (extra.offset !== undefined) headers[Headers.OFFSET] = extra.offset.toString();
  if (extra.replay !== undefined) headers[Headers.REPLAY] = extra.replay;
  const properties: AmqpProperties = {
    messageId: event.id,
    appId: event.sender,
    type: event.type,
    timestamp: Math.floor(event.time / 1000),
    contentType: event.contentType,
    deliveryMode: 2,
    headers,
  };
  if (event.correlationId !== undefined) properties.correlationId = event.correlationId;
  if (extra.userId !== undefined) properties.userId = extra.userId;
  return { routingKey: `${event.sender}.${event.type}`, content: event.data, properties };
}

function headerString(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

const CONTRACT_HEADERS = new Set<string>(Object.values(Headers));

/**
 * Reads an event from an AMQP message, as the hub does at ingest and a subscriber at delivery.
 * The routing key is authoritative; `app_id` and `type`, when present, must agree with it. A
 * message without `message_id` gets a fresh UUIDv7. Throws a ValidationError with the reason.
 */
export function fromAmqp(
  message: { routingKey: string; content: Buffer; properties: AmqpProperties },
  options: { maxBytes?: number; now?: number } = {},
): DeliveredEvent {
  const { sender, type } = parseRoutingKey(message.routingKey);
  const p = message.properties;
  if (p.appId !== undefined && p.appId !== null && p.appId !== sender) {
    invalid(
      `app_id ${JSON.stringify(p.appId)} disagrees with the sender ${JSON.stringify(sender)} of routing key ${JSON.stringify(message.routingKey)}`,
      {
        appId: p.appId,
        routingKey: message.routingKey,
      },
    );
  }
  if (p.type !== undefined && p.type !== null && p.type !== type) {
    invalid(
      `type property ${JSON.stringify(p.type)} disagrees with the type ${JSON.stringify(type)} of routing key ${JSON.stringify(message.routingKey)}`,
      {
        type: p.type,
        routingKey: message.routingKey,
      },
    );
  }
  assertSize(message.content.length, options.maxBytes ?? DEFAULT_MAX_EVENT_BYTES);
  let id = p.messageId ?? undefined;
  if (id === undefined || id === null || id === '') id = uuidv7();
  else if (!isUuid(id)) invalid(`message_id ${JSON.stringify(id)} is not a UUID`, { messageId: id });
  const raw = p.headers ?? {};
  let time: number;
  const headerTime = raw[Headers.TIME];
  if (headerTime !== undefined && headerTime !== null) {
    time = Number(typeof headerTime === 'object' ? headerString(headerTime) : headerTime);
    if (!Number.isFinite(time) || time < 0)
      invalid(`header ${Headers.TIME} ${JSON.stringify(headerString(headerTime))} is not epoch milliseconds`);
    time = Math.trunc(time);
  } else if (typeof p.timestamp === 'number' && p.timestamp > 0) {
    time = p.timestamp * 1000;
  } else {
    time = options.now ?? Date.now();
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (CONTRACT_HEADERS.has(k as (typeof Headers)[keyof typeof Headers])) continue;
    if (k.startsWith('x-death') || k.startsWith('x-first-death') || k.startsWith('x-last-death')) continue;
    const s = headerString(v);
    if (s !== undefined) headers[k] = s;
  }
  const offsetRaw = headerString(raw[Headers.OFFSET]);
  let offset: bigint | undefined;
  if (offsetRaw !== undefined) {
    try {
      offset = BigInt(offsetRaw);
    } catch {
      invalid(`header ${Headers.OFFSET} ${JSON.stringify(offsetRaw)} is not an integer`);
    }
  }
  return {
    id,
    sender,
    type,
    time,
    data: message.content,
    contentType: p.contentType ?? DEFAULT_CONTENT_TYPE,
    subject: headerString(raw[Headers.SUBJECT]),
    correlationId: p.correlationId ?? undefined,
    causationId: headerString(raw[Headers.CAUSATION_ID]),
    headers,
    offset,
    replay: headerString(raw[Headers.REPLAY]),
  };
}

/** True for content types whose body is JSON (`application/json`, `application/*+json`). */
export function isJsonContentType(contentType: string): boolean {
  const base = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return base === 'application/json' || (base.startsWith('application/') && base.endsWith('+json'));
}

/**
 * An event body as JSON shows it: `{ data }` parsed when the content type is JSON and the bytes
 * are valid JSON, else `{ dataBase64 }` with the bytes as they are.
 */
export function bodyJson(contentType: string, data: Buffer): { data: unknown } | { dataBase64: string } {
  if (isJsonContentType(contentType)) {
    try {
      return { data: JSON.parse(data.toString('utf8')) };
    } catch {
      // Bytes that claim JSON but are not: show them as they are.
    }
  }
  return { dataBase64: data.toString('base64') };
}
