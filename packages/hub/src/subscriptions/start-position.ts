import { ErrorCodes, isSubscriptionName, ValidationError } from '@herald/core';
import { parseHistoryPoint } from '../replays/index.ts';
import type { StartPosition } from './types.ts';

function invalid(parameter: string, message: string): never {
  throw new ValidationError(ErrorCodes.INVALID_REQUEST, message, { details: { parameter } });
}

/** Throws INVALID_REQUEST (parameter `name`) unless the name is `[A-Za-z0-9_.-]{1,128}`. */
export function assertSubscriptionName(name: unknown): asserts name is string {
  if (!isSubscriptionName(name))
    invalid('name', `invalid subscription name ${JSON.stringify(name)}: expected 1-128 characters of A-Z a-z 0-9 _ . -`);
}

/**
 * Reads a start position in its JSON form (`"new" | "earliest" | {"offset": N} | {"time": ISO} |
 * {"last": N}`) or as a StartPosition (offsets as bigint, times as epoch ms). Undefined means `new`.
 * The objects follow the rule of replays (parseHistoryPoint). Throws INVALID_REQUEST naming
 * `start`, `start.offset`, `start.time` or `start.last`.
 */
export function normalizeStart(input: unknown): StartPosition {
  if (input === undefined || input === null || input === 'new') return 'new';
  if (input === 'earliest') return 'earliest';
  if (typeof input !== 'object' || Array.isArray(input))
    invalid('start', `invalid start ${JSON.stringify(input)}: expected "new", "earliest", {"offset": N}, {"time": ISO} or {"last": N}`);
  return parseHistoryPoint('start', input, ['offset', 'time', 'last']);
}
