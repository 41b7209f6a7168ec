import { type ErrorCode, ErrorCodes, ValidationError } from './errors.ts';

/**
 * One limit of the contract: its value, what it bounds, and the setting that changes it (none for
 * limits fixed by AMQP, PostgreSQL or JavaScript). docs/reliability.md lists this table; a unit test
 * keeps the two in step.
 */
export interface Limit {
  readonly value: number;
  readonly unit: 'bytes' | 'count' | 'characters' | 'epoch ms' | 'levels';
  readonly what: string;
  /** The hub setting that changes it, when one does. */
  readonly setting?: string;
}

/**
 * The limits of DESIGN.md §2, in one table, checked at every edge (REST, gRPC, AMQP ingest, the SDK)
 * through the functions below, so that a stored event can always be forwarded and read back.
 */
export const LIMITS = {
  /** AMQP short strings (message_id, content_type, correlation_id, header names) are length-prefixed by one byte. */
  shortStringBytes: { value: 255, unit: 'bytes', what: 'id, content type, correlation id, causation id, each header name' },
  /**
   * The header table the hub sends when it forwards an event (the event's headers, subject, causation
   * id, time, offset and replay id) as AMQP encodes it: amqplib encodes a table into a 64 KiB buffer.
   */
  headerTableBytes: {
    value: 65_536,
    unit: 'bytes',
    what: 'all headers of an event as forwarded (names, values, subject, causation id and the x-herald-* headers)',
  },
  /** The event body; larger ones are refused (REST 413, gRPC INVALID_ARGUMENT) or dead-lettered (ingest). */
  eventBytes: { value: 1_048_576, unit: 'bytes', what: 'an event body', setting: 'HERALD_MAX_EVENT_BYTES' },
  /** Event time: from the Unix epoch to the last millisecond that ISO 8601 writes with four year digits. */
  minEventTime: { value: 0, unit: 'epoch ms', what: 'earliest event time (1970-01-01T00:00:00.000Z)' },
  maxEventTime: { value: 253_402_300_799_999, unit: 'epoch ms', what: 'latest event time (9999-12-31T23:59:59.999Z)' },
  /** Patterns in one selector (after de-duplication); each is matched and queried on its own. */
  selectorPatterns: { value: 100, unit: 'count', what: 'patterns in one selector' },
  /** Segments of one pattern's type: a routing key of 255 bytes has at most 127 type segments. */
  patternSegments: { value: 128, unit: 'count', what: 'segments in the type of one selector pattern' },
  /** Type segments over the patterns with `*` or `#` in their type: bounds the matcher's work per event. */
  selectorWildcardSegments: { value: 512, unit: 'count', what: 'type segments over the patterns of one selector that hold * or #' },
  /** A durable subscription's name; every route that carries one (paths, gRPC, queue names) fits it. */
  subscriptionNameChars: { value: 128, unit: 'characters', what: 'a subscription name ([A-Za-z0-9_.-])' },
  /** Nesting of a JSON request body or event body shown as JSON; deeper bodies are refused, or shown as base64. */
  jsonDepth: { value: 64, unit: 'levels', what: 'nesting of JSON in a request, and of a body the API shows as JSON' },
  /** A W3C tracestate (trace-context.ts); a traceparent has its fixed 55 characters. */
  tracestateBytes: { value: 512, unit: 'bytes', what: 'the W3C tracestate of an event (printable ASCII)' },
  /** Free text the hub keeps (a pause's reason). */
  textChars: { value: 1000, unit: 'characters', what: 'free text such as a pause reason' },
} as const satisfies Record<string, Limit>;

/** The largest offset: PostgreSQL bigint, signed 64-bit. Offsets and counts travel as decimal strings. */
export const MAX_OFFSET = 2n ** 63n - 1n;

/** Throws a ValidationError with `details.parameter` naming the field. */
function refuse(code: ErrorCode, field: string, message: string, extra: Record<string, unknown> = {}): never {
  throw new ValidationError(code, message, { details: { parameter: field, ...extra } });
}

/** A short, safe rendering of a bad value for an error message (never the whole of a huge string). */
export function preview(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' ? value : typeof value === 'bigint' ? value.toString() : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  // JSON.stringify writes control characters and lone surrogates as escapes.
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
}

/**
 * Why `value` is not acceptable text: not a string, a lone surrogate (not valid UTF-8), a NUL (which
 * PostgreSQL's text refuses), or more than `maxBytes` of UTF-8. Undefined when it is fine.
 */
export function textProblem(value: unknown, maxBytes?: number): string | undefined {
  if (typeof value !== 'string') return `must be a string, got ${value === null ? 'null' : typeof value}`;
  if (value.includes('\u0000')) return 'must not contain a NUL character';
  if (!value.isWellFormed()) return 'must be valid UTF-8 (it holds a lone surrogate)';
  if (maxBytes !== undefined && value.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(value);
    if (bytes > maxBytes) return `must be at most ${maxBytes} bytes of UTF-8, got ${bytes}`;
  }
  return undefined;
}

/**
 * Throws a ValidationError (`code`, default INVALID_EVENT) naming `field` unless `value` is a string
 * of valid UTF-8 without NUL, at most `maxBytes` long.
 */
export function checkText(field: string, value: unknown, maxBytes?: number, code: ErrorCode = ErrorCodes.INVALID_EVENT): string {
  const problem = textProblem(value, maxBytes);
  if (problem !== undefined) refuse(code, field, `invalid ${field}: ${problem}`);
  return value as string;
}

/** Throws INVALID_EVENT naming `field` unless `ms` is an integer inside the event time window. */
export function checkEventTime(field: string, ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < LIMITS.minEventTime.value || ms > LIMITS.maxEventTime.value) {
    refuse(
      ErrorCodes.INVALID_EVENT,
      field,
      `invalid ${field} ${preview(ms)}: expected epoch milliseconds from 0 (1970-01-01) to ${LIMITS.maxEventTime.value} (9999-12-31T23:59:59.999Z)`,
    );
  }
  return ms;
}

/**
 * An offset (or a count) from a request: a non-negative integer as a JSON number that is exact
 * (≤ 2^53 - 1), a decimal string, or a bigint, at most MAX_OFFSET. Throws INVALID_REQUEST naming `field`.
 */
export function parseOffset(field: string, value: unknown): bigint {
  let n: bigint | undefined;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
  else if (typeof value === 'string' && /^[0-9]{1,19}$/.test(value)) n = BigInt(value);
  if (n === undefined || n < 0n || n > MAX_OFFSET) {
    const hint = typeof value === 'number' && Number.isInteger(value) ? ' (send integers above 2^53 as decimal strings)' : '';
    refuse(
      ErrorCodes.INVALID_REQUEST,
      field,
      `invalid ${field} ${preview(value)}: expected an offset, an integer from 0 to ${MAX_OFFSET} as a decimal string${hint}`,
    );
  }
  return n;
}

/** True when `value` nests arrays and objects deeper than `max` levels. Iterative: no stack to overflow. */
export function deeperThan(value: unknown, max: number = LIMITS.jsonDepth.value): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (depth > max) return true;
    const children = Array.isArray(v) ? v : Object.values(v as object);
    for (const c of children) if (typeof c === 'object' && c !== null) stack.push([c, depth + 1]);
  }
  return false;
}

/**
 * True when raw JSON text nests deeper than `max` levels, found by counting brackets outside
 * strings, before anything parses it (a parser or serializer that recurses could overflow its stack).
 */
export function jsonTextDeeperThan(text: string, max: number = LIMITS.jsonDepth.value): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** The widest range a JavaScript Date holds, ±8.64e15 ms. */
const DATE_RANGE_MS = 8.64e15;

/**
 * Epoch milliseconds as ISO 8601, for any number: a time past what a Date holds (an event stored
 * before the time window was checked) is shown at the edge of that range, never thrown.
 */
export function isoTime(ms: number): string {
  const clamped = Number.isFinite(ms) ? Math.max(-DATE_RANGE_MS, Math.min(DATE_RANGE_MS, ms)) : 0;
  return new Date(clamped).toISOString();
}
