import { isUtf8 } from 'node:buffer';
import { ErrorCodes, ValidationError } from './errors.ts';
import { checkEventTime, checkText, jsonTextDeeperThan, LIMITS, preview } from './limits.ts';
import { assertSender, assertType, parseRoutingKey } from './names.ts';
import { checkTraceContext, TRACEPARENT, TRACESTATE, validTraceContext } from './trace-context.ts';
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
  /** On a subscriber's dead letter: the queue it was consumed from. */
  ORIGINAL_QUEUE: 'x-herald-original-queue',
  /** On a dead letter: when its first and its last attempt failed, epoch milliseconds. */
  FIRST_FAILED_AT: 'x-herald-first-failed-at',
  LAST_FAILED_AT: 'x-herald-last-failed-at',
  /** On the hub's own dead letters on `herald.dead`: already kept in the hub's dead letters. */
  DEAD_STORED: 'x-herald-dead-stored',
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
  /** W3C trace context `00-<trace id>-<parent id>-<flags>`, the AMQP header `traceparent` (trace-context.ts). */
  readonly traceparent?: string | undefined;
  /** W3C tracestate (≤ 512 bytes), only with a traceparent: the AMQP header `tracestate`. */
  readonly tracestate?: string | undefined;
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
  /** Headers named `traceparent` or `tracestate` are the trace context (the fields below), as on AMQP. */
  headers?: Record<string, string> | undefined;
  /** W3C traceparent, checked: a malformed one refuses the event (INVALID_EVENT, parameter `traceparent`). */
  traceparent?: string | undefined;
  /** W3C tracestate (≤ 512 bytes of printable ASCII), only with a traceparent; checked likewise. */
  tracestate?: string | undefined;
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
  if (typeof ms !== 'number' || !Number.isFinite(ms))
    invalid(`invalid time ${preview(time)}: expected a Date or epoch milliseconds`, { parameter: 'time' });
  return Math.trunc(ms);
}

/**
 * Builds and validates an event against the limits (checkEvent). Throws a ValidationError naming
 * the bad field in `details.parameter` (sender, type, id, time, subject, headers.<name>, data …).
 * `maxBytes` defaults to 1 MiB.
 */
export function createEvent(init: EventInit, options: { maxBytes?: number } = {}): HeraldEvent {
  assertSender(init.sender);
  assertType(init.type, init.sender);
  if (init.id !== undefined && !isUuid(init.id))
    invalid(`invalid event id ${preview(init.id)}: expected a UUID`, { id: init.id, parameter: 'id' });
  const { bytes, contentType } = encodeData(init.data);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_EVENT_BYTES;
  assertSize(bytes.length, maxBytes);
  let headers: Readonly<Record<string, string>> = NO_HEADERS;
  let headerParent: string | undefined;
  let headerState: string | undefined;
  // Most events carry no extra headers: nothing to copy or compare then.
  if (init.headers !== undefined && init.headers !== null) {
    const given = init.headers;
    if (typeof given !== 'object' || Array.isArray(given))
      invalid('invalid headers: expected an object of string values', { parameter: 'headers' });
    ({ [TRACEPARENT]: headerParent, [TRACESTATE]: headerState, ...headers } = given);
    disagreeing(TRACEPARENT, init.traceparent, headerParent);
    disagreeing(TRACESTATE, init.tracestate, headerState);
  }
  // One clock reading for the time and the id when neither is given (a given time never moves the id's clock).
  const now = init.time === undefined ? Date.now() : undefined;
  const event: HeraldEvent = {
    id: init.id ?? uuidv7(now),
    sender: init.sender,
    type: init.type,
    time: now ?? toTime(init.time),
    data: bytes,
    contentType: init.contentType ?? contentType,
    subject: init.subject,
    correlationId: init.correlationId,
    causationId: init.causationId,
    headers,
    traceparent: init.traceparent ?? headerParent,
    tracestate: init.tracestate ?? headerState,
  };
  // An id made here is a UUID by construction: only a given one needs the pattern test again.
  checkFields(event, maxBytes, init.id !== undefined);
  return event;
}

/** The headers of an event that has none: one shared, frozen object. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** Refuses a trace context field set both as an option and as a header, to different values. */
function disagreeing(field: string, option: string | undefined, header: string | undefined): void {
  if (option !== undefined && header !== undefined && option !== header)
    invalid(`invalid ${field}: the ${field} option and header disagree`, { parameter: field });
}

/** Header names of the wire contract: the hub's own, never an event's extra header. */
const CONTRACT_HEADERS = new Set<string>(Object.values(Headers));
/** Longest decimal offset and replay id the hub adds when it forwards. */
const OFFSET_TEXT_BYTES = 19;
const REPLAY_ID_BYTES = 36;
/** One entry of an AMQP field table holding a long string: name length, name, type tag, length, value. */
const entryBytes = (name: string, valueBytes: number) => 1 + Buffer.byteLength(name) + 1 + 4 + valueBytes;
/** The table's length prefix, x-herald-time (a 64-bit number) and the largest offset and replay id. */
const FORWARD_FIXED_BYTES =
  4 + (1 + Headers.TIME.length + 1 + 8) + entryBytes(Headers.OFFSET, OFFSET_TEXT_BYTES) + entryBytes(Headers.REPLAY, REPLAY_ID_BYTES);

/**
 * The size of the header table the hub encodes when it forwards `event` (toAmqp with the largest
 * offset and a replay id), in bytes as AMQP 0-9-1 encodes it. At most LIMITS.headerTableBytes for
 * every event that passed checkEvent.
 */
export function forwardHeaderBytes(event: Pick<HeraldEvent, 'headers' | 'subject' | 'causationId' | 'traceparent' | 'tracestate'>): number {
  let n = FORWARD_FIXED_BYTES;
  if (event.traceparent !== undefined) n += entryBytes(TRACEPARENT, Buffer.byteLength(event.traceparent));
  if (event.tracestate !== undefined) n += entryBytes(TRACESTATE, Buffer.byteLength(event.tracestate));
  if (event.subject !== undefined) n += entryBytes(Headers.SUBJECT, Buffer.byteLength(event.subject));
  if (event.causationId !== undefined) n += entryBytes(Headers.CAUSATION_ID, Buffer.byteLength(event.causationId));
  for (const name in event.headers) n += entryBytes(name, Buffer.byteLength(event.headers[name] as string));
  return n;
}

/**
 * The limits of DESIGN.md §2 on a whole event, the one check every edge runs (createEvent for the
 * SDK, REST and gRPC; fromAmqp for ingest): a UUID id; the time inside the window; content type,
 * correlation id, causation id and header names as AMQP short strings (≤ 255 bytes); every string
 * valid UTF-8 without NUL; no header named like one of the contract's; the header table as the hub
 * forwards it within 64 KiB; a well-formed trace context (checkTraceContext); the body within
 * `maxBytes`. Sender and type are checked where they are read (assertSender, assertType). Throws
 * a ValidationError (INVALID_EVENT, EVENT_TOO_LARGE) whose `details.parameter` names the field, so
 * an event that passed can always be stored and forwarded.
 */
export function checkEvent(event: HeraldEvent, options: { maxBytes?: number } = {}): void {
  checkFields(event, options.maxBytes ?? DEFAULT_MAX_EVENT_BYTES, true);
}

function checkFields(event: HeraldEvent, maxBytes: number, checkId: boolean): void {
  const short = LIMITS.shortStringBytes.value;
  if (checkId && !isUuid(event.id)) invalid(`invalid event id ${preview(event.id)}: expected a UUID`, { parameter: 'id' });
  checkEventTime('time', event.time);
  checkText('contentType', event.contentType, short);
  if (event.correlationId !== undefined) checkText('correlationId', event.correlationId, short);
  if (event.causationId !== undefined) checkText('causationId', event.causationId, short);
  if (event.subject !== undefined) checkText('subject', event.subject);
  for (const name in event.headers) {
    checkText('headers', name, short);
    if (name === '') invalid('invalid headers: a header name is empty', { parameter: 'headers' });
    if (CONTRACT_HEADERS.has(name))
      invalid(`invalid headers: ${preview(name)} is a header of the wire contract, set by Herald`, { parameter: 'headers' });
    if (name === TRACEPARENT || name === TRACESTATE)
      invalid(`invalid headers: ${name} is the event's trace context, not an extra header`, { parameter: 'headers' });
    checkText(`headers.${name}`, event.headers[name]);
  }
  checkTraceContext(event);
  const headerBytes = forwardHeaderBytes(event);
  if (headerBytes > LIMITS.headerTableBytes.value)
    invalid(
      `invalid headers: subject, causation id and headers take ${headerBytes} bytes as forwarded, more than the ${LIMITS.headerTableBytes.value} an AMQP header table holds`,
      { parameter: 'headers', bytes: headerBytes },
    );
  assertSize(event.data.length, maxBytes);
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
  if (event.traceparent !== undefined) headers[TRACEPARENT] = event.traceparent;
  if (event.tracestate !== undefined) headers[TRACESTATE] = event.tracestate;
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

/**
 * A header value as the text an event keeps: strings as they are, numbers and booleans in decimal,
 * tables and arrays as JSON. Bytes must be UTF-8 text: a binary value is refused, not mangled.
 */
function headerString(name: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) {
    if (!isUtf8(value))
      invalid(`header ${preview(name)} holds ${value.length} bytes that are not UTF-8 text`, { parameter: `headers.${name}` });
    return value.toString('utf8');
  }
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const original = this[key];
    if (typeof original === 'bigint') return original.toString();
    if (Buffer.isBuffer(original)) return headerString(name, original);
    return v;
  });
}

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
    invalid(`app_id ${preview(p.appId)} disagrees with the sender ${preview(sender)} of routing key ${preview(message.routingKey)}`, {
      parameter: 'appId',
    });
  }
  if (p.type !== undefined && p.type !== null && p.type !== type) {
    invalid(`type property ${preview(p.type)} disagrees with the type ${preview(type)} of routing key ${preview(message.routingKey)}`, {
      parameter: 'type',
    });
  }
  assertSize(message.content.length, options.maxBytes ?? DEFAULT_MAX_EVENT_BYTES);
  let id = p.messageId ?? undefined;
  if (id === undefined || id === null || id === '') id = uuidv7();
  else if (!isUuid(id)) invalid(`message_id ${preview(id)} is not a UUID`, { parameter: 'id' });
  const raw = p.headers ?? {};
  let time: number;
  const headerTime = raw[Headers.TIME];
  if (headerTime !== undefined && headerTime !== null) {
    const text = headerString(Headers.TIME, headerTime) ?? '';
    time = /^\s*-?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?\s*$/.test(text) ? Math.trunc(Number(text)) : Number.NaN;
    checkEventTime(`header ${Headers.TIME}`, time);
  } else if (typeof p.timestamp === 'number' && p.timestamp > 0) {
    time = checkEventTime('timestamp', p.timestamp * 1000);
  } else {
    time = options.now ?? Date.now();
  }
  const headers: Record<string, string> = {};
  // Carried along, so a bad trace context is dropped, never a reason to refuse the event.
  const trace = validTraceContext(raw[TRACEPARENT], raw[TRACESTATE]);
  for (const [k, v] of Object.entries(raw)) {
    if (CONTRACT_HEADERS.has(k) || k === TRACEPARENT || k === TRACESTATE) continue;
    if (k.startsWith('x-death') || k.startsWith('x-first-death') || k.startsWith('x-last-death')) continue;
    const s = headerString(k, v);
    if (s !== undefined) headers[k] = s;
  }
  const offsetRaw = headerString(Headers.OFFSET, raw[Headers.OFFSET]);
  let offset: bigint | undefined;
  if (offsetRaw !== undefined) {
    if (!/^[0-9]{1,19}$/.test(offsetRaw)) invalid(`header ${Headers.OFFSET} ${preview(offsetRaw)} is not an offset`);
    offset = BigInt(offsetRaw);
  }
  const event: DeliveredEvent = {
    id,
    sender,
    type,
    time,
    data: message.content,
    contentType: p.contentType ?? DEFAULT_CONTENT_TYPE,
    subject: headerString(Headers.SUBJECT, raw[Headers.SUBJECT]),
    correlationId: p.correlationId ?? undefined,
    causationId: headerString(Headers.CAUSATION_ID, raw[Headers.CAUSATION_ID]),
    headers,
    traceparent: trace.traceparent,
    tracestate: trace.tracestate,
    offset,
    replay: headerString(Headers.REPLAY, raw[Headers.REPLAY]),
  };
  checkEvent(event, options);
  return event;
}

/** True for content types whose body is JSON (`application/json`, `application/*+json`). */
export function isJsonContentType(contentType: string): boolean {
  const base = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return base === 'application/json' || (base.startsWith('application/') && base.endsWith('+json'));
}

/**
 * An event body as JSON shows it: `{ data }` parsed when the content type is JSON and the bytes
 * are valid UTF-8 JSON nested at most LIMITS.jsonDepth deep, else `{ dataBase64 }` with the bytes as
 * they are. Never throws: whatever is stored can be shown.
 */
export function bodyJson(contentType: string, data: Buffer): { data: unknown } | { dataBase64: string } {
  if (isJsonContentType(contentType) && isUtf8(data)) {
    const text = data.toString('utf8');
    // Too deep to serialize again (JSON.stringify recurses): the bytes as they are.
    if (!jsonTextDeeperThan(text)) {
      try {
        return { data: JSON.parse(text) };
      } catch {
        // Bytes that claim JSON but are not: show them as they are.
      }
    }
  }
  return { dataBase64: data.toString('base64') };
}
