import { ErrorCodes, ValidationError } from '@herald/core';
import type { StartPosition } from './types.ts';

/** `[A-Za-z0-9_.-]{1,128}`. */
const NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;
/** The most events `{"last": N}` may ask for. */
export const MAX_START_LAST = 100_000;

function invalid(parameter: string, message: string): never {
  throw new ValidationError(ErrorCodes.INVALID_REQUEST, message, { details: { parameter } });
}

/** Throws INVALID_REQUEST (parameter `name`) unless the name is `[A-Za-z0-9_.-]{1,128}`. */
export function assertSubscriptionName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME_RE.test(name))
    invalid('name', `invalid subscription name ${JSON.stringify(name)}: expected 1-128 characters of A-Z a-z 0-9 _ . -`);
}

/**
 * Reads a start position in its JSON form (`"new" | "earliest" | {"offset": N} | {"time": ISO} |
 * {"last": N}`) or as a StartPosition (offsets as bigint, times as epoch ms). Undefined means `new`.
 * Throws INVALID_REQUEST naming `start`, `start.offset`, `start.time` or `start.last`.
 */
export function normalizeStart(input: unknown): StartPosition {
  if (input === undefined || input === null || input === 'new') return 'new';
  if (input === 'earliest') return 'earliest';
  if (typeof input !== 'object' || Array.isArray(input))
    invalid('start', `invalid start ${JSON.stringify(input)}: expected "new", "earliest", {"offset": N}, {"time": ISO} or {"last": N}`);
  const keys = Object.keys(input);
  if (keys.length !== 1 || !['offset', 'time', 'last'].includes(keys[0] as string))
    invalid('start', `invalid start ${JSON.stringify(input)}: expected exactly one of offset, time, last`);
  const key = keys[0] as 'offset' | 'time' | 'last';
  const v = (input as Record<string, unknown>)[key];
  if (key === 'offset') {
    if (typeof v === 'bigint' && v >= 0n) return { offset: v };
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return { offset: BigInt(v) };
    if (typeof v === 'string' && /^\d{1,19}$/.test(v)) return { offset: BigInt(v) };
    return invalid('start.offset', `invalid start.offset ${JSON.stringify(String(v))}: expected an offset (an integer ≥ 0)`);
  }
  if (key === 'time') {
    const ms = typeof v === 'number' ? v : typeof v === 'string' ? Date.parse(v) : Number.NaN;
    if (!Number.isFinite(ms)) invalid('start.time', `invalid start.time ${JSON.stringify(v)}: expected an ISO 8601 time`);
    return { time: ms };
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > MAX_START_LAST)
    invalid('start.last', `invalid start.last ${JSON.stringify(v)}: expected an integer from 1 to ${MAX_START_LAST}`);
  return { last: v };
}
