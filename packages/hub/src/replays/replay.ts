import { ErrorCodes, LIMITS, parseOffset, preview, type Selector, type SelectorInput, ValidationError } from '@herald/core';
import { parseSelectorParameter } from '../pauses/pause.ts';
import type { Store } from '../store/types.ts';

/** Where a replay starts: the last N matching events, an offset (inclusive) or an event time (inclusive). */
export type ReplayFrom = { last: number } | { offset: bigint } | { time: number };
/** Where a replay stops: an offset (inclusive) or an event time (exclusive). Default: the head of the log when the replay was created. */
export type ReplayTo = { offset: bigint } | { time: number };
/**
 * `flow`: the replayed events go to `herald.events`, marked with `x-herald-replay`, for every receiver.
 * `{subscription}`: they go to that durable subscription's consumer alone (the subscription manager runs it).
 */
export type ReplayTarget = 'flow' | { readonly subscription: string };
/** `cancelled`: stopped by DELETE /api/v1/replays/{id} before it finished. */
export type ReplayStatus = 'pending' | 'running' | 'done' | 'failed' | 'cancelled';

/** Re-sending stored events that match a selector (DESIGN.md §1). */
export interface Replay {
  readonly id: string;
  readonly selector: Selector;
  readonly from: ReplayFrom;
  readonly to: ReplayTo | undefined;
  readonly target: ReplayTarget;
  readonly status: ReplayStatus;
  /** Events sent so far. */
  readonly count: number;
  /** The range resolved at creation: offsets above `after` up to `upTo`, event time in [since, until). */
  readonly after: bigint;
  readonly upTo: bigint;
  readonly since: number | undefined;
  readonly until: number | undefined;
  /** The highest offset sent so far (where a restarted hub continues). */
  readonly position: bigint;
  readonly createdAt: number;
  readonly finishedAt: number | undefined;
  readonly error: string | undefined;
}

/** A replay request as the REST API and CLI send it. */
export interface ReplayInput {
  selector: SelectorInput;
  from: unknown;
  to?: unknown;
  target?: unknown;
}

/** The most events `{"last": N}` may ask for (they are read at once to find where the replay starts). */
export const MAX_REPLAY_LAST = 100_000;

function invalid(field: string, message: string): never {
  throw new ValidationError(ErrorCodes.INVALID_REQUEST, message, { details: { parameter: field } });
}

const offsetOf = parseOffset;

function timeOf(field: string, v: unknown): number {
  const ms = typeof v === 'number' ? v : typeof v === 'string' ? Date.parse(v) : Number.NaN;
  if (!Number.isFinite(ms) || ms < LIMITS.minEventTime.value || ms > LIMITS.maxEventTime.value)
    invalid(field, `invalid ${field} ${preview(v)}: expected an ISO 8601 time from 1970 to 9999, e.g. 2026-01-31T12:00:00Z`);
  return Math.trunc(ms);
}

function oneKey(field: string, v: unknown, allowed: string[]): [string, unknown] {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    invalid(field, `invalid ${field}: expected an object with one of ${allowed.join(', ')}`);
  const keys = Object.keys(v);
  if (keys.length !== 1 || !allowed.includes(keys[0] as string))
    invalid(field, `invalid ${field} ${JSON.stringify(v)}: expected exactly one of ${allowed.join(', ')}`);
  const key = keys[0] as string;
  return [key, (v as Record<string, unknown>)[key]];
}

/**
 * Validates a replay request. Throws a ValidationError naming the field: INVALID_SELECTOR for the
 * selector, INVALID_REQUEST with `details.parameter` = `from`, `from.last`, `to`, `target`… otherwise.
 * A target other than `flow` is refused here: a replay into a durable subscription (`{"subscription":
 * name}`, see subscriptionTarget) is validated by the same function with the target taken off.
 */
export function normalizeReplayInput(input: ReplayInput): {
  selector: Selector;
  from: ReplayFrom;
  to: ReplayTo | undefined;
  target: 'flow';
} {
  const selector = parseSelectorParameter(input.selector);
  const target = input.target ?? 'flow';
  if (target !== 'flow')
    invalid(
      'target',
      `invalid target ${JSON.stringify(target)}: only "flow" is taken here (a replay into a subscription is {"subscription": "<name>"})`,
    );
  if (input.from === undefined) invalid('from', 'missing from: expected {"last": N}, {"offset": N} or {"time": ISO}');
  const from = parseHistoryPoint('from', input.from, ['last', 'offset', 'time']);
  const to = input.to === undefined || input.to === null ? undefined : (parseHistoryPoint('to', input.to, ['offset', 'time']) as ReplayTo);
  return { selector, from, to, target };
}

/**
 * A point in the log's history as requests name it: `{"last": N}` (1 to MAX_REPLAY_LAST),
 * `{"offset": N}` (a JSON integer, a decimal string or a bigint) or `{"time": ISO}` (or epoch ms),
 * exactly one of `kinds`. Replays (`from`, `to`) and subscription starts read it the same way.
 * Throws INVALID_REQUEST naming `field` or `field.<kind>`.
 */
export function parseHistoryPoint(field: string, v: unknown, kinds: readonly ('last' | 'offset' | 'time')[]): ReplayFrom {
  const [key, value] = oneKey(field, v, [...kinds]);
  if (key === 'offset') return { offset: offsetOf(`${field}.offset`, value) };
  if (key === 'time') return { time: timeOf(`${field}.time`, value) };
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_REPLAY_LAST)
    invalid(`${field}.last`, `invalid ${field}.last ${JSON.stringify(value)}: expected an integer from 1 to ${MAX_REPLAY_LAST}`);
  return { last: value };
}

/** JSON-safe form of a replay's bounds (offsets as decimal strings would read oddly: they fit in numbers up to 2^53). */
export function boundToJson(b: ReplayFrom | ReplayTo): Record<string, number | string> {
  if ('last' in b) return { last: b.last };
  if ('offset' in b) return { offset: b.offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b.offset) : b.offset.toString() };
  return { time: new Date(b.time).toISOString() };
}

/**
 * The subscription a replay targets, for `"target": {"subscription": "<name>"}`; undefined for any
 * other target (left to normalizeReplayInput). Throws INVALID_REQUEST (parameter `target.subscription`)
 * for a name that is not a string.
 */
export function subscriptionTarget(target: unknown): string | undefined {
  if (typeof target !== 'object' || target === null || Array.isArray(target) || !('subscription' in target)) return undefined;
  const keys = Object.keys(target);
  if (keys.length !== 1) invalid('target', `invalid target ${JSON.stringify(target)}: expected {"subscription": "<name>"}`);
  const name = (target as { subscription: unknown }).subscription;
  if (typeof name !== 'string' || name === '')
    invalid('target.subscription', `invalid target.subscription ${JSON.stringify(name)}: expected a subscription name`);
  return name;
}

/** A replay's range resolved against the log: offsets in (after, upTo], event time in [since, until). */
export interface ReplayRange {
  after: bigint;
  upTo: bigint;
  since: number | undefined;
  until: number | undefined;
}

/**
 * Resolves `from` and `to` against the log as a replay into the flow does: the end is the head (or
 * `to`), `{"last": N}` becomes the offset before the N-th last matching event, an offset start is
 * inclusive, a time start becomes `since`.
 */
export async function resolveReplayRange(
  store: Pick<Store, 'query'>,
  req: { selector: Selector; from: ReplayFrom; to: ReplayTo | undefined },
  head: bigint,
): Promise<ReplayRange> {
  let upTo = head;
  if (req.to && 'offset' in req.to && req.to.offset < upTo) upTo = req.to.offset;
  const until = req.to && 'time' in req.to ? req.to.time : undefined;
  let after = 0n;
  let since: number | undefined;
  if ('last' in req.from) {
    const last = await store.query({ selector: req.selector, upTo, until, last: req.from.last, limit: req.from.last });
    after = last[0] ? last[0].offset - 1n : upTo;
  } else if ('offset' in req.from) after = req.from.offset > 0n ? req.from.offset - 1n : 0n;
  else since = req.from.time;
  return { after, upTo, since, until };
}
