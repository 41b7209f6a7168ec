import { createHash, type Hash } from 'node:crypto';
import { types } from 'node:util';
import { Headers, LIMITS } from '@herald/core';
import type { Message } from 'amqplib';
import { clean, DEAD_LETTER_BOUNDS, sanitizeProperties } from '../ingest/dead-letters.ts';
import type { ReceivedDeadLetter } from '../store/index.ts';

/** The code of a dead letter on herald.dead that names none (or one that is not an error code). */
export const UNKNOWN_CODE = 'UNKNOWN';
/** Error codes as the dead letters API filters them. */
export const CODE_RE = /^[A-Z_]{1,64}$/;
/** Attempts above this are not a count a handler made: taken as unknown. */
const MAX_ATTEMPTS = 2 ** 31 - 1;
/** Headers RabbitMQ adds on a redelivery (quorum queues): left out of the key, so a redelivery keeps it. */
const REDELIVERY_HEADERS = new Set(['x-delivery-count', 'x-acquired-count']);
/** Nesting the key follows; deeper parts count by their place only. */
const KEY_DEPTH = 64;
/**
 * The most of a body a dead letter from herald.dead keeps (1 MiB, the default largest event): the
 * rest is cut, and `properties.sanitized.bodyTruncated` says how large it was. A subscriber's dead
 * letter is redriven from the log, not from these bytes; a cut one of the hub's is not redriven.
 */
export const MAX_KEPT_BODY_BYTES = 1024 * 1024;

/** A header value as text: strings as they are, bytes as UTF-8 (lossy), numbers in decimal; else undefined. */
function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (types.isUint8Array(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return undefined;
}

/** A header value as a non-negative safe integer (a number, a bigint or decimal text); else undefined. */
function integer(value: unknown, max: number): number | undefined {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'bigint') n = Number(value);
  else {
    const s = text(value);
    if (s === undefined || !/^[0-9]{1,16}$/.test(s.trim())) return undefined;
    n = Number(s.trim());
  }
  return Number.isSafeInteger(n) && n >= 0 && n <= max ? n : undefined;
}

/**
 * The hub's mark on a dead letter it published to herald.dead: `kept` (x-herald-dead-stored:
 * true, its row is written), `not-kept` (false: the store refused it, the intake keeps it as the
 * hub's), or undefined. Trusted only when the message's `user_id` is `hubUser`, the hub's own AMQP
 * user: RabbitMQ refuses a user_id that is not the publishing connection's user, so whoever else
 * may write to herald.dead cannot forge it (their mark is kept as part of a subscriber's letter).
 */
export function hubMark(msg: Pick<Message, 'properties'>, hubUser: string | undefined): 'kept' | 'not-kept' | undefined {
  if (hubUser === undefined || msg.properties.userId !== hubUser) return undefined;
  const headers = msg.properties.headers as Record<string, unknown> | undefined;
  if (typeof headers !== 'object' || headers === null) return undefined;
  const stored = text(headers[Headers.DEAD_STORED]);
  return stored === 'true' ? 'kept' : stored === 'false' ? 'not-kept' : undefined;
}

/** True when the hub itself published this dead letter and kept it already (hubMark). */
export function keptByHub(msg: Pick<Message, 'properties'>, hubUser: string | undefined): boolean {
  return hubMark(msg, hubUser) === 'kept';
}

/** Feeds a decoded AMQP value to the hash, tagged by kind, so different values never feed the same bytes. */
function feed(hash: Hash, value: unknown, depth: number): void {
  if (value === undefined || value === null) return void hash.update('n;');
  switch (typeof value) {
    case 'string':
      return void hash.update(`s${Buffer.byteLength(value)}:`).update(value);
    case 'number':
    case 'bigint':
    case 'boolean':
      return void hash.update(`${typeof value}:${String(value)};`);
    case 'object':
      break;
    default:
      return void hash.update(`?${typeof value};`);
  }
  if (types.isUint8Array(value)) return void hash.update(`b${value.byteLength}:`).update(value);
  if (types.isDate(value)) return void hash.update(`d:${value.getTime()};`);
  if (depth >= KEY_DEPTH) return void hash.update('deep;');
  if (Array.isArray(value)) {
    hash.update(`a${value.length}[`);
    for (const v of value) feed(hash, v, depth + 1);
    return void hash.update(']');
  }
  let entries = Object.entries(value as Record<string, unknown>);
  if (depth === 0) entries = entries.filter(([k]) => !REDELIVERY_HEADERS.has(k));
  hash.update(`o${entries.length}{`);
  for (const [k, v] of entries) {
    feed(hash, k, depth + 1);
    feed(hash, v, depth + 1);
  }
  hash.update('}');
}

/**
 * The key of a message on herald.dead: a SHA-256 of its routing key, properties and headers
 * (those RabbitMQ adds on a redelivery left out) and body. A redelivered message has the same key;
 * two deaths of one event differ at least by x-herald-last-failed-at, which the SDK sets.
 */
export function deadLetterKey(msg: Pick<Message, 'fields' | 'properties' | 'content'>): string {
  const hash = createHash('sha256');
  feed(hash, msg.fields.routingKey, 0);
  const { headers, ...rest } = msg.properties as unknown as Record<string, unknown>;
  feed(hash, rest, 0);
  // The header table at the top, where REDELIVERY_HEADERS are left out.
  feed(hash, headers ?? null, 0);
  hash.update(`body${msg.content.length}:`).update(msg.content);
  return hash.digest('hex');
}

function time(value: unknown): number | undefined {
  const n = integer(value, LIMITS.maxEventTime.value);
  return n !== undefined && n >= LIMITS.minEventTime.value ? n : undefined;
}

/**
 * A message taken from herald.dead as the dead letter it keeps, sanitized as the ingest's are
 * (every text valid UTF-8 without NUL and bounded, properties and headers within their bounds, the
 * body byte for byte up to MAX_KEPT_BODY_BYTES). Its source is `hub` only when the hub marked it
 * as its own it could not keep (hubMark with `hubUser`), else `subscriber`. Read from its headers: the reason and code (UNKNOWN when absent or not an
 * error code), attempts (undefined when absent or not a count), the first and last failure time
 * (the time it is read, `now`, when absent or outside the event time window; the first never after
 * the last), the original exchange (else the exchange it came on) and queue. The routing key is the
 * message's own. Never throws: whatever comes is kept.
 */
export function receivedDeadLetter(msg: Message, now: number = Date.now(), hubUser?: string): ReceivedDeadLetter {
  const short = DEAD_LETTER_BOUNDS.shortBytes;
  const raw = msg.properties.headers as Record<string, unknown> | undefined;
  const headers = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw : {};
  const reasonText = text(headers[Headers.DEAD_REASON]);
  const codeText = text(headers[Headers.DEAD_CODE]);
  const exchange = text(headers[Headers.ORIGINAL_EXCHANGE]);
  const queue = text(headers[Headers.ORIGINAL_QUEUE]);
  const lastFailedAt = time(headers[Headers.LAST_FAILED_AT]) ?? now;
  const firstFailedAt = Math.min(time(headers[Headers.FIRST_FAILED_AT]) ?? lastFailedAt, lastFailedAt);
  let properties: Record<string, unknown>;
  let dedupeKey: string;
  try {
    properties = sanitizeProperties(msg.properties as unknown as Record<string, unknown>);
  } catch (failure) {
    properties = { sanitized: { failed: clean(String(failure), DEAD_LETTER_BOUNDS.reasonBytes) } };
  }
  try {
    dedupeKey = deadLetterKey(msg);
  } catch {
    // Only a value no decoder makes; the body and routing key still tell redeliveries apart.
    dedupeKey = deadLetterKey({ fields: msg.fields, properties: {} as Message['properties'], content: msg.content });
  }
  const messageId = msg.properties.messageId as unknown;
  let body = msg.content;
  if (body.length > MAX_KEPT_BODY_BYTES) {
    const note = typeof properties.sanitized === 'object' && properties.sanitized !== null ? properties.sanitized : {};
    properties.sanitized = { ...note, bodyTruncated: { bytes: body.length, kept: MAX_KEPT_BODY_BYTES } };
    body = body.subarray(0, MAX_KEPT_BODY_BYTES);
  }
  return {
    source: hubMark(msg, hubUser) === 'not-kept' ? 'hub' : 'subscriber',
    reason: clean(reasonText ?? `no reason given (no ${Headers.DEAD_REASON} header)`, DEAD_LETTER_BOUNDS.reasonBytes),
    code: codeText !== undefined && CODE_RE.test(codeText) ? codeText : UNKNOWN_CODE,
    exchange: clean(exchange ?? String(msg.fields.exchange), short),
    routingKey: clean(String(msg.fields.routingKey), short),
    messageId: typeof messageId === 'string' ? clean(messageId, short) : undefined,
    properties,
    body,
    at: now,
    queue: queue === undefined ? undefined : clean(queue, short),
    attempts: integer(headers[Headers.ATTEMPTS], MAX_ATTEMPTS),
    firstFailedAt,
    lastFailedAt,
    dedupeKey,
  };
}

/** True when the intake kept only the start of the letter's body (MAX_KEPT_BODY_BYTES). */
export function bodyCut(properties: Readonly<Record<string, unknown>>): boolean {
  const note = properties.sanitized;
  return typeof note === 'object' && note !== null && 'bodyTruncated' in note;
}
