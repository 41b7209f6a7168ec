import {
  assertSender,
  bindingKeys as bindingKeysOf,
  compileMatcher,
  DEFAULT_GRPC_PORT,
  DEFAULT_MAX_EVENT_BYTES,
  ErrorCodes,
  type HeraldError,
  HUB_MODES,
  type HubMode,
  isSubscriptionName,
  type Matcher,
  parseSelector,
  redactUrl,
  type Selector,
  type SelectorInput,
  selectorPatterns,
  ValidationError,
  type WireStart,
} from '@herald/core';
import type { DurableSubscriptionOptions, SubscriptionStart } from './durable-subscription.ts';
import type { HubPublisherOptions } from './hub-publisher.ts';
import type { ConnectionOptions, PublisherOptions, SubscriberOptions } from './types.ts';
import { type EventCheck, eventCheck } from './validation.ts';

/** The AMQP URL used when neither the options nor `HERALD_AMQP_URL` give one. */
export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** Connection settings with every default filled in. */
export interface NormalizedConnection {
  readonly url: string;
  /** The user RabbitMQ will authenticate, as `user_id` must name it. */
  readonly user: string;
  readonly reconnectInitialDelayMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly connectionName: string;
}

export interface NormalizedPublisher extends NormalizedConnection {
  readonly sender: string;
  readonly maxPending: number;
  readonly confirmTimeoutMs: number;
  readonly maxEventBytes: number;
  readonly setUserId: boolean;
  readonly declareTopology: boolean;
  readonly onError: ((err: Error) => void) | undefined;
  /** From `schemas` and `validate`: checks each event before it is sent; undefined when neither is given. */
  readonly check: EventCheck | undefined;
}

export interface NormalizedSubscriber extends NormalizedConnection {
  readonly selector: Selector;
  readonly bindingKeys: readonly string[];
  /** The selector's matcher: the binding keys may route more than it matches (a type with two `#`). */
  readonly matches: Matcher;
  readonly queue: string | undefined;
  readonly queueType: 'classic' | 'quorum';
  readonly concurrency: number;
  readonly prefetch: number;
  readonly maxAttempts: number;
  readonly retryDelayMs: number;
  readonly maxEventBytes: number;
  readonly onError: ((err: Error) => void) | undefined;
}

export function bad(field: string, message: string, value: unknown): never {
  throw new ValidationError(ErrorCodes.INVALID_CONFIG, `invalid option ${field}: ${message} (got ${describe(value)})`, {
    details: { field, value },
  });
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  } catch {
    return String(value);
  }
}

/** The integer option `field` of `o`; `name` is how errors call it (default `field`). */
export function int(
  o: Record<string, unknown>,
  field: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  name = field,
): number {
  const v = o[field];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    bad(name, `expected an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}`, v);
  }
  return v;
}

export function bool(o: Record<string, unknown>, field: string, fallback: boolean): boolean {
  const v = o[field];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') bad(field, 'expected true or false', v);
  return v;
}

export function callback(o: Record<string, unknown>, field: string): ((err: Error) => void) | undefined {
  const v = o[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'function') bad(field, 'expected a function', v);
  return v as (err: Error) => void;
}

// Unknown fields are rejected so that a typo (`concurency: 4`) fails loudly instead of silently
// running with the default.
export function rejectUnknown(o: Record<string, unknown>, known: readonly string[], what: string): void {
  for (const key of Object.keys(o)) {
    if (!known.includes(key) && o[key] !== undefined) {
      throw new ValidationError(ErrorCodes.INVALID_CONFIG, `unknown ${what} option ${JSON.stringify(key)}; known: ${known.join(', ')}`, {
        details: { field: key },
      });
    }
  }
}

export function record(options: unknown, what: string): Record<string, unknown> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, `invalid ${what} options: expected an object (got ${describe(options)})`);
  }
  return options as Record<string, unknown>;
}

const CONNECTION_FIELDS = ['url', 'reconnectInitialDelayMs', 'reconnectMaxDelayMs', 'connectionName'] as const;

/** Fills in and checks the connection fields shared by every client; `role` names the connection. */
export function normalizeConnection(options: ConnectionOptions, role: string): NormalizedConnection {
  const o = options as Record<string, unknown>;
  const url = o.url ?? process.env.HERALD_AMQP_URL ?? DEFAULT_AMQP_URL;
  if (typeof url !== 'string') bad('url', 'expected an amqp:// or amqps:// URL', url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    bad('url', 'expected an amqp:// or amqps:// URL', redactUrl(url));
  }
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') bad('url', 'expected an amqp:// or amqps:// URL', redactUrl(url));
  const reconnectInitialDelayMs = int(o, 'reconnectInitialDelayMs', 100, 0);
  const reconnectMaxDelayMs = int(o, 'reconnectMaxDelayMs', Math.max(5000, reconnectInitialDelayMs), 1);
  if (reconnectMaxDelayMs < reconnectInitialDelayMs) {
    bad('reconnectMaxDelayMs', `must be at least reconnectInitialDelayMs (${reconnectInitialDelayMs})`, reconnectMaxDelayMs);
  }
  const connectionName = o.connectionName ?? `herald-${role}-${process.pid}`;
  if (typeof connectionName !== 'string' || connectionName === '') bad('connectionName', 'expected a non-empty string', connectionName);
  return {
    url,
    // amqplib logs in as guest when the URL names no user.
    user: decodeURIComponent(parsed.username) || 'guest',
    reconnectInitialDelayMs,
    reconnectMaxDelayMs,
    connectionName,
  };
}

const PUBLISHER_FIELDS = [
  ...CONNECTION_FIELDS,
  'sender',
  'maxPending',
  'confirmTimeoutMs',
  'maxEventBytes',
  'setUserId',
  'declareTopology',
  'onError',
  'schemas',
  'validate',
] as const;

/**
 * The one normalizer of PublisherOptions: fills in the defaults and throws a ValidationError
 * (INVALID_CONFIG, or INVALID_SENDER for the sender) naming the first bad field.
 */
export function normalizePublisherOptions(options: PublisherOptions): NormalizedPublisher {
  const o = record(options, 'publisher');
  rejectUnknown(o, PUBLISHER_FIELDS, 'publisher');
  assertSender(o.sender);
  return {
    ...normalizeConnection(options, 'publisher'),
    sender: o.sender,
    maxPending: int(o, 'maxPending', 10_000, 1),
    confirmTimeoutMs: int(o, 'confirmTimeoutMs', 30_000, 0),
    maxEventBytes: int(o, 'maxEventBytes', DEFAULT_MAX_EVENT_BYTES, 1),
    setUserId: bool(o, 'setUserId', true),
    declareTopology: bool(o, 'declareTopology', false),
    onError: callback(o, 'onError'),
    check: eventCheck(options.schemas, validator(o)),
  };
}

function validator(o: Record<string, unknown>): PublisherOptions['validate'] {
  const v = o.validate;
  if (v !== undefined && typeof v !== 'function') bad('validate', 'expected a function (type, data) => reason | undefined', v);
  return v as PublisherOptions['validate'];
}

const SUBSCRIBER_FIELDS = [
  ...CONNECTION_FIELDS,
  'selector',
  'queue',
  'queueType',
  'concurrency',
  'prefetch',
  'maxAttempts',
  'retryDelayMs',
  'maxEventBytes',
  'onError',
  'signal',
] as const;

/**
 * The one normalizer of SubscriberOptions: parses the selector (INVALID_SELECTOR), fills in the
 * defaults and throws a ValidationError (INVALID_CONFIG) naming the first bad field.
 */
export function normalizeSubscriberOptions(options: SubscriberOptions): NormalizedSubscriber {
  const o = record(options, 'subscriber');
  rejectUnknown(o, SUBSCRIBER_FIELDS, 'subscriber');
  if (o.selector === undefined) bad('selector', 'required, e.g. "billing:*" or ["*:invoice.paid"]', o.selector);
  const selector = parseSelector(options.selector);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) bad('signal', 'expected an AbortSignal', o.signal);
  const queue = o.queue;
  if (queue !== undefined) {
    if (typeof queue !== 'string' || queue === '' || Buffer.byteLength(queue) > 255) bad('queue', 'expected a name of 1-255 bytes', queue);
    if (queue.startsWith('amq.')) bad('queue', 'names starting with "amq." are reserved by RabbitMQ', queue);
  }
  const queueType = o.queueType ?? 'classic';
  if (queueType !== 'classic' && queueType !== 'quorum') bad('queueType', 'expected classic or quorum', queueType);
  if (queueType === 'quorum' && queue === undefined) bad('queueType', 'quorum needs a named queue (option queue)', queueType);
  const concurrency = int(o, 'concurrency', 1, 1, 65_535);
  const prefetch = int(o, 'prefetch', Math.max(concurrency * 2, 50), 1, 65_535);
  if (prefetch < concurrency) bad('prefetch', `must be at least concurrency (${concurrency}) or handlers would sit idle`, prefetch);
  return {
    ...normalizeConnection(options, 'subscriber'),
    selector,
    bindingKeys: bindingKeysOf(selector),
    matches: compileMatcher(selector),
    queue: queue as string | undefined,
    queueType,
    concurrency,
    prefetch,
    maxAttempts: int(o, 'maxAttempts', 5, 1),
    retryDelayMs: int(o, 'retryDelayMs', 1000, 0),
    maxEventBytes: int(o, 'maxEventBytes', DEFAULT_MAX_EVENT_BYTES, 1),
    onError: callback(o, 'onError'),
  };
}

/** Checks a hub mode given to declareTopology. */
export function normalizeMode(mode: unknown): HubMode {
  if (mode === undefined) return 'router';
  if (!HUB_MODES.includes(mode as HubMode)) bad('mode', 'expected router or archive', mode);
  return mode as HubMode;
}

/** A durable subscription's options with every default filled in (see subscription()). */
export interface NormalizedDurableSubscription {
  readonly name: string;
  readonly selector: string[];
  /** The first of `urls`. */
  readonly url: string;
  /** The hubs' gRPC addresses, tried in turn. */
  readonly urls: readonly string[];
  readonly start: WireStart | undefined;
  readonly maxInFlight: number;
  readonly signal: AbortSignal | undefined;
  readonly token: string | undefined;
  readonly reconnectInitialDelayMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly onError: ((err: HeraldError) => void) | undefined;
}

/**
 * Checks an API token: printable ASCII without spaces, at most 4,096 characters (a header value
 * must not carry a line break or NUL). An empty HERALD_TOKEN means none. Never echoes the token.
 */
function tokenOption(token: unknown): string | undefined {
  if (token === undefined || token === '') return undefined;
  if (typeof token !== 'string' || token.length > 4096 || !/^[\x21-\x7e]+$/.test(token)) {
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid token: expected up to 4096 printable ASCII characters, no spaces', {
      details: { field: 'token' },
    });
  }
  return token;
}

/** The hub's gRPC address from the option or the environment. */
export function grpcUrl(url?: string): string {
  const port = process.env.HERALD_GRPC_PORT;
  const raw = url ?? process.env.HERALD_GRPC_URL ?? `127.0.0.1:${port || DEFAULT_GRPC_PORT}`;
  return raw.replace(/^(grpc|http):\/\//, '').replace(/\/+$/, '');
}

/** Most hub addresses a subscription takes. */
const MAX_GRPC_URLS = 16;

/**
 * The hubs' gRPC addresses from the option (one, a list, or a comma-separated string) or the
 * environment (HERALD_GRPC_URL may be comma-separated too); throws INVALID_CONFIG naming `url`.
 */
export function grpcUrls(url?: string | readonly string[]): string[] {
  const given = url ?? process.env.HERALD_GRPC_URL;
  if (given === undefined) return [grpcUrl()];
  const list = typeof given === 'string' ? given.split(',') : Array.isArray(given) ? given : undefined;
  if (!list || list.length === 0 || list.length > MAX_GRPC_URLS) bad('url', `expected host:port or a list of 1-${MAX_GRPC_URLS}`, given);
  return list.map((u) => {
    if (typeof u !== 'string' || !/^[^\s,]{1,1000}$/.test(u.trim())) bad('url', 'expected host:port addresses', u);
    return grpcUrl(u.trim());
  });
}

function startOption(start: SubscriptionStart | undefined): WireStart | undefined {
  if (start === undefined || start === 'resume') return undefined;
  if (start === 'new') return { new: true };
  if (start === 'earliest') return { earliest: true };
  if (typeof start === 'object' && start !== null) {
    if ('offset' in start) {
      try {
        const o = BigInt(start.offset);
        if (o >= 0n) return { offset: o.toString() };
      } catch {
        // reported below
      }
      bad('start.offset', 'expected an offset ≥ 0', start.offset);
    }
    if ('time' in start) {
      const t = start.time;
      const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : t;
      if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) bad('start.time', 'expected a Date, an ISO time or epoch ms', t);
      return { timeMs: String(Math.trunc(ms)) };
    }
    if ('last' in start) return { last: int(start as Record<string, unknown>, 'last', 0, 1, 1_000_000, 'start.last') };
  }
  return bad('start', 'expected "resume", "new", "earliest", {offset}, {time} or {last}', start);
}

/** Validates and fills in the options of subscription(); throws a ValidationError (INVALID_CONFIG / INVALID_SELECTOR) naming the field. */
export function normalizeDurableSubscriptionOptions(
  name: string,
  selector: SelectorInput,
  options: DurableSubscriptionOptions = {},
): NormalizedDurableSubscription {
  if (!isSubscriptionName(name)) bad('name', 'expected [A-Za-z0-9_.-]{1,128}', name);
  const o = options as Record<string, unknown>;
  const initial = int(o, 'reconnectInitialDelayMs', 100, 1, 600_000);
  const max = int(o, 'reconnectMaxDelayMs', 5000, 1, 600_000);
  if (max < initial) bad('reconnectMaxDelayMs', `must be at least reconnectInitialDelayMs (${initial})`, max);
  const urls = grpcUrls(options.url);
  return {
    name,
    selector: selectorPatterns(selector),
    url: urls[0] as string,
    urls,
    start: startOption(options.start),
    maxInFlight: int(o, 'maxInFlight', 100, 1, 10_000),
    signal: options.signal,
    token: tokenOption(options.token ?? process.env.HERALD_TOKEN),
    reconnectInitialDelayMs: initial,
    reconnectMaxDelayMs: max,
    onError: callback(o, 'onError') as ((err: HeraldError) => void) | undefined,
  };
}

/** A hub publisher's options with every default filled in (see createHubPublisher()). */
export interface NormalizedHubPublisher {
  readonly sender: string;
  /** The hubs' gRPC addresses, tried in turn. */
  readonly urls: readonly string[];
  readonly token: string | undefined;
  readonly maxPending: number;
  readonly confirmTimeoutMs: number;
  readonly maxEventBytes: number;
  readonly reconnectInitialDelayMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly onError: ((err: Error) => void) | undefined;
  readonly check: EventCheck | undefined;
}

const HUB_PUBLISHER_FIELDS = [
  'sender',
  'url',
  'token',
  'maxPending',
  'confirmTimeoutMs',
  'maxEventBytes',
  'reconnectInitialDelayMs',
  'reconnectMaxDelayMs',
  'onError',
  'schemas',
  'validate',
] as const;

/** Validates and fills in the options of createHubPublisher(); throws a ValidationError (INVALID_CONFIG / INVALID_SENDER) naming the field. */
export function normalizeHubPublisherOptions(options: HubPublisherOptions): NormalizedHubPublisher {
  const o = record(options, 'hub publisher');
  rejectUnknown(o, HUB_PUBLISHER_FIELDS, 'hub publisher');
  assertSender(o.sender);
  const initial = int(o, 'reconnectInitialDelayMs', 100, 1, 600_000);
  const max = int(o, 'reconnectMaxDelayMs', 5000, 1, 600_000);
  if (max < initial) bad('reconnectMaxDelayMs', `must be at least reconnectInitialDelayMs (${initial})`, max);
  return {
    sender: o.sender,
    urls: grpcUrls(options.url),
    token: tokenOption(options.token ?? process.env.HERALD_TOKEN),
    maxPending: int(o, 'maxPending', 10_000, 1, 1_000_000),
    confirmTimeoutMs: int(o, 'confirmTimeoutMs', 30_000, 0),
    maxEventBytes: int(o, 'maxEventBytes', DEFAULT_MAX_EVENT_BYTES, 1),
    reconnectInitialDelayMs: initial,
    reconnectMaxDelayMs: max,
    onError: callback(o, 'onError'),
    check: eventCheck(options.schemas, validator(o)),
  };
}
