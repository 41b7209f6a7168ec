import { ErrorCodes, type Matcher, parseSelector, type Selector, type SelectorInput, ValidationError } from '@herald/core';

/** The default lifetime of a pause: 300 s. */
export const DEFAULT_PAUSE_TTL_MS = 300_000;
/** The default longest lifetime a pause may be given: 24 h. */
export const DEFAULT_MAX_PAUSE_TTL_MS = 24 * 3600_000;

/** A rule "hold the flow of this selector" with a mandatory expiry (DESIGN.md §1, guarantee 4). */
export interface Pause {
  readonly id: string;
  readonly selector: Selector;
  readonly reason: string | undefined;
  /** Set for the hub's own pause that holds the flow while a replay into it runs. */
  readonly replayId: string | undefined;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms: the pause ends by itself then. */
  readonly expiresAt: number;
  /** Epoch ms when it ended (resumed or expired); undefined while active. */
  readonly endedAt: number | undefined;
  /** Epoch ms when everything it held was released; undefined until then. */
  readonly releasedAt: number | undefined;
}

/** What a user gives to create a pause (REST body, CLI). */
export interface PauseInput {
  selector: SelectorInput;
  /** Seconds; default 300, at most the configured maximum. */
  ttl?: number | undefined;
  reason?: string | undefined;
}

/** The limits a pause's ttl is checked against. */
export interface PauseLimits {
  /** Default 300 000 (300 s). */
  defaultTtlMs?: number | undefined;
  /** Default 86 400 000 (24 h). */
  maxTtlMs?: number | undefined;
  /** User pauses active at once (HERALD_MAX_PAUSES); the next create is LIMIT_EXCEEDED. Default 1000. */
  maxActive?: number | undefined;
}

const MAX_REASON_LENGTH = 1000;

function invalidField(field: string, message: string): never {
  throw new ValidationError(ErrorCodes.INVALID_REQUEST, message, { details: { parameter: field } });
}

/** Parses the request's selector; a bad one is INVALID_SELECTOR naming the parameter `selector`. */
export function parseSelectorParameter(input: SelectorInput): Selector {
  try {
    return parseSelector(input);
  } catch (err) {
    throw new ValidationError(ErrorCodes.INVALID_SELECTOR, err instanceof Error ? err.message : String(err), {
      cause: err,
      details: { parameter: 'selector' },
    });
  }
}

/**
 * Validates a pause request. Throws a ValidationError (INVALID_SELECTOR for the selector,
 * INVALID_REQUEST with `details.parameter` = `ttl` or `reason` otherwise) naming what is wrong, e.g. a
 * ttl above the maximum.
 */
export function normalizePauseInput(
  input: PauseInput,
  limits: PauseLimits = {},
): { selector: Selector; ttlMs: number; reason: string | undefined } {
  const selector = parseSelectorParameter(input.selector);
  const maxTtlMs = limits.maxTtlMs ?? DEFAULT_MAX_PAUSE_TTL_MS;
  let ttlMs = limits.defaultTtlMs ?? DEFAULT_PAUSE_TTL_MS;
  if (input.ttl !== undefined) {
    if (typeof input.ttl !== 'number' || !Number.isFinite(input.ttl) || input.ttl <= 0)
      invalidField('ttl', `invalid ttl ${JSON.stringify(input.ttl)}: expected a positive number of seconds`);
    ttlMs = Math.round(input.ttl * 1000);
  }
  if (ttlMs > maxTtlMs)
    invalidField('ttl', `invalid ttl ${ttlMs / 1000}: a pause may last at most ${maxTtlMs / 1000} s (the configured maximum)`);
  if (ttlMs < 1) invalidField('ttl', 'invalid ttl: expected at least 1 ms');
  const reason = input.reason;
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH))
    invalidField('reason', `invalid reason: expected a string of at most ${MAX_REASON_LENGTH} characters`);
  return { selector, ttlMs, reason: reason === '' ? undefined : reason };
}

/** A pause compiled for the hot path. */
export interface HoldRule {
  readonly id: string;
  readonly matches: Matcher;
}

/**
 * Splits a batch into the events to forward now and those to hold: an event is held when any rule
 * matches it. Keeps the batch order in both parts. No allocation when no rule applies.
 */
export function partitionHeld<E extends { readonly sender: string; readonly type: string }>(
  events: readonly E[],
  rules: readonly HoldRule[],
): { forward: readonly E[]; hold: readonly E[] } {
  if (rules.length === 0) return { forward: events, hold: [] };
  const forward: E[] = [];
  const hold: E[] = [];
  for (const e of events) {
    let held = false;
    for (const r of rules) {
      if (r.matches(e.sender, e.type)) {
        held = true;
        break;
      }
    }
    (held ? hold : forward).push(e);
  }
  return { forward, hold };
}
