import { types } from 'node:util';
import { LIMITS } from '@herald/core';

/**
 * The largest header table amqplib can publish: it encodes every table into one 64 KiB scratch
 * buffer and throws a RangeError past it (lib/defs.js, lib/codec.js). The content header frame that
 * carries it stays below RabbitMQ's default frame_max of 128 KiB.
 */
export const MAX_HEADER_TABLE_BYTES = LIMITS.headerTableBytes.value;
/** AMQP short strings (routing key, message_id, app_id, type, content_type, correlation_id, header names). */
export const MAX_SHORT_STRING_BYTES = LIMITS.shortStringBytes.value;

/**
 * Set to "true" on a message the hub published without the headers it would normally carry,
 * because amqplib or RabbitMQ could not take them: a forward of a stored event whose header table
 * cannot be encoded (the event stays whole in the log), or a dead letter whose original headers
 * cannot be published again (they are in the dead_letters row).
 */
export const HEADERS_DROPPED_HEADER = 'x-herald-headers-dropped';

/** Nesting past this is taken as unencodable (amqplib recurses, and RabbitMQ would not take it either). */
const MAX_DEPTH = 100;
const UNENCODABLE = Number.POSITIVE_INFINITY;

/** amqplib's rule for a JS number: a double when it has a fraction (below 2^50) or exceeds a signed 64-bit integer. */
function isFloatingPoint(n: number): boolean {
  return n >= 0x8000000000000000 || (Math.abs(n) < 0x4000000000000 && Math.floor(n) !== n);
}

function isInt(v: unknown, min: number, max: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function fitsBigInt(v: unknown, min: bigint, max: bigint): boolean {
  try {
    const b = BigInt(v as bigint);
    return b >= min && b <= max;
  } catch {
    return false;
  }
}

/** Bytes of one tagged field value (tag included), or Infinity when amqplib would throw on it. */
function valueBytes(value: unknown, depth: number): number {
  let type: string = typeof value;
  let val = value;
  // amqplib's trapdoor for a declared type: { '!': 'timestamp', value: 123 }.
  if (value && type === 'object' && Object.hasOwn(value as object, '!')) {
    val = (value as { value?: unknown }).value;
    type = (value as { '!': unknown })['!'] as string;
  }
  if (type === 'number') {
    const n = val as number;
    if (isFloatingPoint(n)) type = 'double';
    else if (n < 128 && n >= -128) type = 'byte';
    else if (n >= -0x8000 && n < 0x8000) type = 'short';
    else if (n >= -0x80000000 && n < 0x80000000) type = 'int';
    else type = 'long';
  }
  switch (type) {
    case 'string':
      return typeof val === 'string' ? 1 + 4 + Buffer.byteLength(val, 'utf8') : UNENCODABLE;
    case 'object':
      if (val === null) return 1;
      if (Array.isArray(val)) {
        if (depth >= MAX_DEPTH) return UNENCODABLE;
        let n = 1 + 4;
        for (const item of val) n += valueBytes(item, depth + 1);
        return n;
      }
      // amqplib asks Buffer.isBuffer (the prototype) and then copies the bytes, which throws for a
      // table that only inherits from a Buffer (a header named `__proto__` decoded by assignment).
      if (Buffer.isBuffer(val)) return types.isUint8Array(val) ? 1 + 4 + val.length : UNENCODABLE;
      return depth >= MAX_DEPTH ? UNENCODABLE : 1 + tableBytes(val as object, depth + 1);
    case 'boolean':
      return 2;
    case 'double':
    case 'float64':
      return typeof val === 'number' ? 9 : UNENCODABLE;
    case 'float':
      return typeof val === 'number' ? 5 : UNENCODABLE;
    case 'byte':
    case 'int8':
      return isInt(val, -128, 127) ? 2 : UNENCODABLE;
    case 'unsignedbyte':
    case 'uint8':
      return isInt(val, 0, 255) ? 2 : UNENCODABLE;
    case 'short':
    case 'int16':
      return isInt(val, -0x8000, 0x7fff) ? 3 : UNENCODABLE;
    case 'unsignedshort':
    case 'uint16':
      return isInt(val, 0, 0xffff) ? 3 : UNENCODABLE;
    case 'int':
    case 'int32':
      return isInt(val, -0x80000000, 0x7fffffff) ? 5 : UNENCODABLE;
    case 'unsignedint':
    case 'uint32':
      return isInt(val, 0, 0xffffffff) ? 5 : UNENCODABLE;
    case 'long':
    case 'int64':
      return fitsBigInt(val, -(2n ** 63n), 2n ** 63n - 1n) ? 9 : UNENCODABLE;
    case 'timestamp':
      return fitsBigInt(val, 0n, 2n ** 64n - 1n) ? 9 : UNENCODABLE;
    case 'decimal': {
      const d = val as { places?: unknown; digits?: unknown } | null | undefined;
      if (typeof d !== 'object' || d === null || !Object.hasOwn(d, 'places') || !Object.hasOwn(d, 'digits')) return UNENCODABLE;
      return isInt(d.places, 0, 255) && isInt(d.digits, 0, 0xffffffff) ? 6 : UNENCODABLE;
    }
    default:
      // bigint, symbol, function, undefined inside an array, an unknown declared type: amqplib throws a TypeError.
      return UNENCODABLE;
  }
}

function tableBytes(table: object, depth: number): number {
  let n = 4;
  // for…in, like amqplib: inherited enumerable keys are encoded too; undefined values are skipped.
  for (const key in table) {
    const value = (table as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const len = Buffer.byteLength(key, 'utf8');
    if (len > MAX_SHORT_STRING_BYTES) return UNENCODABLE;
    n += 1 + len + valueBytes(value, depth);
    if (n === UNENCODABLE) return n;
  }
  return n;
}

/**
 * The size in bytes of `table` as amqplib 2.x encodes an AMQP 0-9-1 field table (the 4-byte length
 * included), value by value as lib/codec.js does: numbers as byte, short, int, long or double by
 * magnitude, strings as long strings, Buffers as byte arrays, arrays and nested tables recursively,
 * and the `{ '!': type, value }` form for declared types. Infinity when amqplib would throw whatever
 * the room: a name over 255 bytes, a value it cannot encode (bigint, undefined in an array, NaN or
 * -Infinity, a bad decimal), nesting past 100 levels, and, erring on the safe side, a declared type
 * whose value is not a number in its range (amqplib coerces some of those). A table can be published
 * when the result is at most MAX_HEADER_TABLE_BYTES. Never throws.
 */
export function fieldTableBytes(table: object): number {
  return tableBytes(table, 0);
}

/** True when amqplib can write `value` as a short string (a string of at most 255 bytes of UTF-8). */
export function isShortString(value: unknown): value is string {
  return typeof value === 'string' && (value.length * 3 <= MAX_SHORT_STRING_BYTES || Buffer.byteLength(value) <= MAX_SHORT_STRING_BYTES);
}

/**
 * True for what a synchronous publish throws when amqplib cannot encode the message (a TypeError or
 * RangeError: a short string too long, a header table over its buffer, a value of no AMQP type), as
 * opposed to a closed channel (IllegalOperationError), after which nothing can be published.
 */
export function isEncodingError(err: unknown): boolean {
  return err instanceof TypeError || err instanceof RangeError;
}
