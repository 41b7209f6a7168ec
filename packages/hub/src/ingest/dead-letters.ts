import { types } from 'node:util';
import { ErrorCodes, Headers, HeraldError, type HeraldEvent, INGEST_EXCHANGE, toAmqp } from '@herald/core';
import type { Message, Options } from 'amqplib';
import type { DeadLetter } from '../store/types.ts';
import { fieldTableBytes, HEADERS_DROPPED_HEADER, isShortString, MAX_HEADER_TABLE_BYTES, MAX_SHORT_STRING_BYTES } from './amqp-table.ts';

/**
 * What a dead letter keeps as text, so that writing it never fails for the reason its message
 * failed. The body is always kept whole, byte for byte. Every text field (reason, code, exchange,
 * routing key, message id, and every property and header name and value inside `properties`) is
 * made valid UTF-8 without NUL (NUL and lone surrogates become U+FFFD) and cut to its bound below.
 */
export const DEAD_LETTER_BOUNDS = {
  /** The reason, in bytes of UTF-8. */
  reasonBytes: 1024,
  /** Code, exchange, routing key, message id, header names and the other properties: an AMQP short string. */
  shortBytes: MAX_SHORT_STRING_BYTES,
  /** Each header value: a string, or the base64 of a byte array. */
  valueBytes: 8192,
  /** The whole properties JSON; past it, the largest header values are dropped first. */
  propertiesBytes: 65_536,
  /** Nesting of tables and arrays inside a header value. */
  depth: 16,
  /** Paths listed in the `sanitized` note of the properties (the rest are counted). */
  notedPaths: 32,
} as const;

/** A dead letter on its way, with what it was made from, to publish to `herald.dead` as it came. */
export interface PendingDeadLetter {
  readonly letter: DeadLetter;
  /** The message as received (or the event as it would be published), original headers included. */
  readonly source: { readonly routingKey: string; readonly content: Buffer; readonly properties: Readonly<Record<string, unknown>> };
}

/** The publish of a dead letter to `herald.dead`. */
export interface DeadLetterPublish {
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
  /** True when the original headers were left out because amqplib could not encode them again. */
  headersDropped: boolean;
}

/** What sanitizing changed, kept in the row's properties as `sanitized` when anything did. */
interface Note {
  changed: string[];
  droppedHeaders: string[];
  more: number;
}

function noteOf(): Note {
  return { changed: [], droppedHeaders: [], more: 0 };
}

function record(list: string[], note: Note, path: string): void {
  if (list.length < DEAD_LETTER_BOUNDS.notedPaths) list.push(cleanPath(path));
  else note.more++;
}

/** A path for the note: the names in it are cut too, so the note stays small. */
function cleanPath(path: string): string {
  return clean(path, DEAD_LETTER_BOUNDS.shortBytes);
}

/** `bytes` cut to at most `max` bytes, at a UTF-8 character boundary. */
function cutUtf8(bytes: Buffer, max: number): string {
  let end = Math.min(max, bytes.length);
  // Back off continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && end < bytes.length && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

/**
 * `text` as valid UTF-8 without NUL, at most `maxBytes` bytes: NUL and lone surrogates become
 * U+FFFD; a longer text is cut at a character boundary and ends with `…[<n> bytes]`, n being its
 * length before the cut.
 */
export function clean(text: string, maxBytes: number): string {
  let s = text.includes('\u0000') ? text.replaceAll('\u0000', '\ufffd') : text;
  if (!s.isWellFormed()) s = s.toWellFormed();
  if (s.length * 3 <= maxBytes) return s;
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length <= maxBytes) return s;
  const suffix = `…[${bytes.length} bytes]`;
  return cutUtf8(bytes, Math.max(0, maxBytes - Buffer.byteLength(suffix))) + suffix;
}

/** `clean`, noting `path` when the text changed. */
function cleanNoted(text: string, maxBytes: number, path: string, note: Note): string {
  const s = clean(text, maxBytes);
  if (s !== text) record(note.changed, note, path);
  return s;
}

/** Bytes shown as base64 with a marker, never as lossy UTF-8: `{ $base64, bytes }`, plus `truncated` when cut. */
function binary(bytes: Uint8Array, path: string, note: Note): Record<string, unknown> {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keep = Math.floor((DEAD_LETTER_BOUNDS.valueBytes * 3) / 4);
  if (buf.length <= keep) return { $base64: buf.toString('base64'), bytes: buf.length };
  record(note.changed, note, path);
  return { $base64: buf.subarray(0, keep).toString('base64'), bytes: buf.length, truncated: true };
}

/** A header value (or part of one) as JSON can hold it and PostgreSQL's jsonb accepts it. */
function cleanValue(value: unknown, path: string, depth: number, note: Note): unknown {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case 'string':
      return cleanNoted(value, DEAD_LETTER_BOUNDS.valueBytes, path, note);
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'bigint':
      return value.toString();
    case 'boolean':
      return value;
    case 'object':
      break;
    default:
      return cleanNoted(String(value), DEAD_LETTER_BOUNDS.valueBytes, path, note);
  }
  // Checked by what the value is, not by its prototype: amqplib decodes a header named `__proto__`
  // by assignment, so a table can inherit from a Buffer (or an array) without being one.
  if (types.isUint8Array(value)) return binary(value, path, note);
  if (types.isDate(value)) return Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
  if (depth >= DEAD_LETTER_BOUNDS.depth) {
    record(note.changed, note, path);
    return `[nested deeper than ${DEAD_LETTER_BOUNDS.depth} levels]`;
  }
  if (Array.isArray(value)) return value.map((v, i) => cleanValue(v, `${path}[${i}]`, depth + 1, note));
  return cleanTable(value as Record<string, unknown>, path, depth + 1, note);
}

function cleanTable(table: Record<string, unknown>, path: string, depth: number, note: Note): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(table)) {
    if (v === undefined) continue;
    const name = cleanNoted(k, DEAD_LETTER_BOUNDS.shortBytes, `${path}.${k}`, note);
    out[name] = cleanValue(v, `${path}.${name}`, depth, note);
  }
  return out;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/**
 * AMQP properties as the row keeps them: every text valid UTF-8 without NUL and bounded
 * (DEAD_LETTER_BOUNDS), Buffers as `{ $base64, bytes }`, the whole JSON within
 * `propertiesBytes` (the largest header values dropped first), and, when anything was changed, a
 * `sanitized` entry `{ changed, droppedHeaders, more }` naming the paths that were altered or dropped.
 * Never throws, and its result always serializes.
 */
export function sanitizeProperties(properties: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return sanitizeNoted(properties, noteOf());
}

/** sanitizeProperties, adding to a note that other fields of the letter started. */
function sanitizeNoted(properties: Readonly<Record<string, unknown>>, note: Note): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let headers: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(properties)) {
    if (v === undefined) continue;
    const name = cleanNoted(k, DEAD_LETTER_BOUNDS.shortBytes, k, note);
    if (name === 'headers' && typeof v === 'object' && v !== null && !Array.isArray(v) && !types.isUint8Array(v)) {
      headers = cleanTable(v as Record<string, unknown>, 'headers', 0, note);
      out.headers = headers;
    } else if (typeof v === 'string') out[name] = cleanNoted(v, DEAD_LETTER_BOUNDS.shortBytes, name, note);
    else out[name] = cleanValue(v, name, 0, note);
  }
  boundProperties(out, headers, note);
  return out;
}

/** Drops the largest header values until the properties JSON (note included) fits its bound. */
function boundProperties(out: Record<string, unknown>, headers: Record<string, unknown> | undefined, note: Note): void {
  const max = DEAD_LETTER_BOUNDS.propertiesBytes;
  const withNote = () => {
    if (note.changed.length > 0 || note.droppedHeaders.length > 0 || note.more > 0) out.sanitized = { ...note };
    return jsonBytes(out);
  };
  let total = withNote();
  if (total <= max || headers === undefined) return;
  const sizes = Object.keys(headers)
    .map((name) => ({ name, bytes: jsonBytes(name) + jsonBytes(headers[name]) + 2 }))
    .sort((a, b) => b.bytes - a.bytes);
  let i = 0;
  while (total > max && i < sizes.length) {
    // Estimated by subtraction, then measured once more with the note grown.
    while (total > max && i < sizes.length) {
      const { name, bytes } = sizes[i++] as { name: string; bytes: number };
      delete headers[name];
      record(note.droppedHeaders, note, name);
      total -= bytes;
    }
    total = withNote();
  }
}

/** Why a message is not an event: the HeraldError's message and code, or a generic one. */
export function deadReason(err: unknown): { reason: string; code: string } {
  if (err instanceof HeraldError) return { reason: err.message, code: err.code };
  return { reason: err instanceof Error ? err.message : String(err), code: ErrorCodes.INVALID_EVENT };
}

function letterOf(
  err: unknown,
  where: { exchange: string; routingKey: string; messageId: unknown },
  properties: Readonly<Record<string, unknown>>,
  body: Buffer,
  at: number,
): DeadLetter {
  const { reason, code } = deadReason(err);
  const note = noteOf();
  const short = DEAD_LETTER_BOUNDS.shortBytes;
  try {
    return fullLetter();
  } catch (failure) {
    // A bug in sanitizing must not stop the flow: keep the body, the reason and where it came
    // from, and say that the properties could not be kept.
    return {
      reason: clean(reason, DEAD_LETTER_BOUNDS.reasonBytes),
      code: clean(code, short),
      exchange: clean(String(where.exchange), short),
      routingKey: clean(String(where.routingKey), short),
      messageId: typeof where.messageId === 'string' ? clean(where.messageId, short) : undefined,
      properties: { sanitized: { failed: clean(String(failure), DEAD_LETTER_BOUNDS.reasonBytes) } },
      body,
      at,
    };
  }
  function fullLetter(): DeadLetter {
    return {
      reason: cleanNoted(reason, DEAD_LETTER_BOUNDS.reasonBytes, 'reason', note),
      code: cleanNoted(code, short, 'code', note),
      exchange: cleanNoted(where.exchange, short, 'exchange', note),
      routingKey: cleanNoted(where.routingKey, short, 'routingKey', note),
      messageId: typeof where.messageId === 'string' ? cleanNoted(where.messageId, short, 'messageId', note) : undefined,
      // Last, so that the note it ends with also names the fields above that were changed.
      properties: sanitizeNoted(properties, note),
      body,
      at,
    };
  }
}

/** The dead letter of a message the hub could not take as an event (`err` says why). Never throws. */
export function messageDeadLetter(msg: Message, err: unknown, at: number = Date.now()): PendingDeadLetter {
  const properties = msg.properties as unknown as Record<string, unknown>;
  const letter = letterOf(
    err,
    { exchange: msg.fields.exchange, routingKey: msg.fields.routingKey, messageId: msg.properties.messageId },
    properties,
    msg.content,
    at,
  );
  return { letter, source: { routingKey: msg.fields.routingKey, content: msg.content, properties } };
}

/**
 * The dead letter of an event the store refused, made from the event itself (its AMQP form as the
 * hub publishes it, headers and x-herald-* headers included). `from` is where it was received.
 * Never throws.
 */
export function eventDeadLetter(
  event: HeraldEvent,
  err: unknown,
  from: { exchange: string; routingKey: string } = { exchange: INGEST_EXCHANGE, routingKey: `${event.sender}.${event.type}` },
  at: number = Date.now(),
): PendingDeadLetter {
  const { routingKey, content, properties } = toAmqp(event);
  const props = properties as Record<string, unknown>;
  const letter = letterOf(err, { ...from, messageId: event.id }, props, content, at);
  return { letter, source: { routingKey, content, properties: props } };
}

/**
 * The x-herald-dead-* and x-herald-original-* headers, one attempt failed at the letter's time, and
 * x-herald-dead-stored: true when the row was written (the hub's consumer of herald.dead then keeps
 * it once), false when it was not (`notStored`, added to the reason: the consumer keeps it as the
 * hub's). The consumer trusts the mark only under the hub's own user_id (deadLetterPublish).
 */
function deadHeaders(letter: DeadLetter, notStored: string | undefined): Record<string, string | number> {
  const reason =
    notStored === undefined
      ? letter.reason
      : clean(`${letter.reason}; not kept in dead_letters: ${notStored}`, 2 * DEAD_LETTER_BOUNDS.reasonBytes);
  const headers: Record<string, string | number> = {
    [Headers.DEAD_REASON]: reason,
    [Headers.DEAD_CODE]: letter.code,
    [Headers.ATTEMPTS]: 1,
    [Headers.FIRST_FAILED_AT]: letter.at,
    [Headers.LAST_FAILED_AT]: letter.at,
    [Headers.ORIGINAL_EXCHANGE]: letter.exchange,
    [Headers.ORIGINAL_ROUTING_KEY]: letter.routingKey,
  };
  headers[Headers.DEAD_STORED] = notStored === undefined ? 'true' : 'false';
  return headers;
}

/**
 * The publish of a dead letter to `herald.dead`: the original body, the original headers plus the
 * x-herald-dead-* and x-herald-original-* headers, and the original properties that travel as
 * short strings. Made so that amqplib and RabbitMQ always take it: when the headers would not
 * encode (fieldTableBytes over MAX_HEADER_TABLE_BYTES, or a value amqplib cannot write) only the
 * dead-letter headers go, with `x-herald-headers-dropped: "true"` (the original headers are in the
 * row); a short-string property over 255 bytes, or not a string, is left out; a routing key that
 * no longer fits is replaced by the row's. The original `user_id` and `expiration` are never
 * copied: `user_id` is `hubUser` (the hub's AMQP user, amqpUser: RabbitMQ refuses any other, and
 * the intake of herald.dead trusts the hub's mark by it), and a dead letter must not expire.
 * `notStored` is the reason the row could not be written, added to the dead reason. Never throws.
 */
export function deadLetterPublish(pending: PendingDeadLetter, notStored?: string, hubUser?: string): DeadLetterPublish {
  const { letter, source } = pending;
  const dead = deadHeaders(letter, notStored);
  const original = source.properties.headers;
  let headers: Record<string, unknown> = dead;
  let headersDropped = false;
  if (typeof original === 'object' && original !== null && !Array.isArray(original)) {
    const all = { ...(original as Record<string, unknown>), ...dead };
    if (fieldTableBytes(all) <= MAX_HEADER_TABLE_BYTES) headers = all;
    else {
      headers = { ...dead, [HEADERS_DROPPED_HEADER]: 'true' };
      headersDropped = true;
    }
  }
  const options: Options.Publish = { persistent: true, headers };
  if (hubUser !== undefined) options.userId = hubUser;
  const p = source.properties;
  if (isShortString(p.messageId)) options.messageId = p.messageId;
  if (isShortString(p.appId)) options.appId = p.appId;
  if (isShortString(p.type)) options.type = p.type;
  if (isShortString(p.contentType)) options.contentType = p.contentType;
  if (isShortString(p.contentEncoding)) options.contentEncoding = p.contentEncoding;
  if (isShortString(p.correlationId)) options.correlationId = p.correlationId;
  if (typeof p.timestamp === 'number' && Number.isSafeInteger(p.timestamp) && p.timestamp >= 0) options.timestamp = p.timestamp;
  // The routing key is kept when RabbitMQ could route it (it accepted it once); it is also in a header.
  const routingKey = isShortString(source.routingKey) ? source.routingKey : letter.routingKey;
  return { routingKey, content: source.content, options, headersDropped };
}

/**
 * The least a dead letter publishes, for when the full form still throws: the row's routing key,
 * the original body, and the dead-letter headers with `x-herald-headers-dropped`. Never throws.
 */
export function minimalDeadLetterPublish(pending: PendingDeadLetter, notStored?: string, hubUser?: string): DeadLetterPublish {
  const headers = { ...deadHeaders(pending.letter, notStored), [HEADERS_DROPPED_HEADER]: 'true' };
  const options: Options.Publish = { persistent: true, headers };
  if (hubUser !== undefined) options.userId = hubUser;
  return { routingKey: pending.letter.routingKey, content: pending.source.content, options, headersDropped: true };
}

/** The full form of a dead letter's publish, then the minimal one, as the hub's user `hubUser`. */
export function deadLetterForms(pending: PendingDeadLetter, notStored: string | undefined, hubUser: string): DeadLetterPublish[] {
  return [deadLetterPublish(pending, notStored, hubUser), minimalDeadLetterPublish(pending, notStored, hubUser)];
}

/**
 * The user an AMQP URL logs in as (amqplib's default, guest, when it names none): the user_id the
 * hub's own publishes to herald.dead carry.
 */
export function amqpUser(url: string): string {
  try {
    return decodeURIComponent(new URL(url).username) || 'guest';
  } catch {
    return 'guest';
  }
}
