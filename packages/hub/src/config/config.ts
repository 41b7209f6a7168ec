import { resolve } from 'node:path';
import {
  DEFAULT_MAX_EVENT_BYTES,
  ErrorCodes,
  HUB_MODES,
  type HubMode,
  parseDuration,
  QUEUE_TYPES,
  type QueueType,
  redactSecrets,
  ValidationError,
} from '@herald/core';
import { AUTH_MODES, type AuthMode, authEnabled, DEFAULT_PUBLISH_RATE_PER_TOKEN } from '../auth/auth.ts';
import { BUDGETS, CAPS } from '../caps/index.ts';
import { DEFAULT_DEAD_LETTERS_MAX } from '../dead-letters/intake.ts';
import { LOG_FORMATS, type LogFormat } from '../log-format.ts';
import { DEFAULT_MAX_FLOWS } from '../metrics/flows.ts';
import { DEFAULT_DATA_DIR } from '../store/index.ts';

export type { HubMode, QueueType };

/**
 * What may be given to the hub, by flag or programmatically. Every field is optional: a missing
 * field falls back to its environment variable, then to its default. Strings are accepted for
 * numbers so flags and environment read the same.
 */
export interface HubOptions {
  /** RabbitMQ. Env `HERALD_AMQP_URL`; default `amqp://guest:guest@127.0.0.1:5672`. */
  amqpUrl?: string | undefined;
  /**
   * The log. Env `HERALD_DATABASE_URL`. A `postgres://` or `postgresql://` URL selects a PostgreSQL
   * server; a `file:` URL or a plain path selects the embedded store in that directory. Default: the
   * embedded store in `./.herald/store`.
   */
  databaseUrl?: string | undefined;
  /** REST port. Env `HERALD_HTTP_PORT`; default 8080 (0 = any free port). */
  httpPort?: number | string | undefined;
  /** REST address. Env `HERALD_HTTP_HOST`; default `127.0.0.1`. */
  httpHost?: string | undefined;
  /** gRPC port (`herald.v1.Herald`). Env `HERALD_GRPC_PORT`; default 50051 (0 = any free port). */
  grpcPort?: number | string | undefined;
  /** `router` or `archive`. Env `HERALD_MODE`; default `router`. */
  mode?: string | undefined;
  /**
   * The RabbitMQ queue type of the queues the hub declares (`herald.ingest`, `herald.store`,
   * `herald.dead`, the receiver queues): `classic`, or `quorum` for a RabbitMQ cluster (replicated,
   * DESIGN.md §7). RabbitMQ cannot change the type of an existing queue: the hub refuses to start
   * when one of its queues exists with the other type, and says how to move. Env
   * `HERALD_QUEUE_TYPE`; default `classic`.
   */
  queueType?: string | undefined;
  /** Largest event body in bytes; larger ones are dead letters. Env `HERALD_MAX_EVENT_BYTES`; default 1048576 (1 MiB). */
  maxEventBytes?: number | string | undefined;
  /**
   * Most events per store transaction. Env `HERALD_BATCH_SIZE`; default 500, or the prefetch when
   * that is smaller (256 with the other defaults). At most the prefetch.
   */
  batchSize?: number | string | undefined;
  /**
   * Unacknowledged ingest messages RabbitMQ may push to the hub (the window batches are cut from).
   * Each may be up to the max event size, so prefetch × max event size must fit the ingest memory
   * bound. Env `HERALD_PREFETCH`; default `min(2000, floor(ingestMaxBytes / maxEventBytes))`, at
   * least 1: 256 with the other defaults (256 MiB / 1 MiB).
   */
  prefetch?: number | string | undefined;
  /**
   * The most bytes of event bodies the ingest may hold at once (prefetch × max event size).
   * Env `HERALD_INGEST_MAX_BYTES`; default 268435456 (256 MiB); at least the max event size.
   */
  ingestMaxBytes?: number | string | undefined;
  /**
   * PostgreSQL connections for reading the log (REST queries, catch-up, pulls, replays), a pool
   * apart from the writer's, so readers never take the connections appends need. Unused by the
   * embedded store (one connection). Env `HERALD_READ_POOL_SIZE`; default 4.
   */
  readPoolSize?: number | string | undefined;
  /**
   * How long a read of the log may run before PostgreSQL cancels it (statement_timeout of the read
   * pool): the caller gets TIMEOUT (REST 504, gRPC DEADLINE_EXCEEDED). Not enforced by the embedded
   * store, whose WebAssembly build has no statement timer. A duration (`30s`, `2m`) or seconds;
   * 1 s to 1 h. Env `HERALD_QUERY_TIMEOUT`; default 30 s.
   */
  queryTimeout?: number | string | undefined;
  /**
   * How long a client has to send a whole request, headers and body (Node's requestTimeout: it ends
   * when the request is received, so long polls and SSE streams outlast it). 0 = none. Node checks
   * every 30 s, so a request is cut between this and 30 s later. A duration (`60s`, `500ms`) or
   * seconds; at most 1 d. Env `HERALD_HTTP_REQUEST_TIMEOUT`; default 60 s.
   */
  httpRequestTimeout?: number | string | undefined;
  /**
   * How long an HTTP connection may stay silent both ways while a request is open before it is
   * closed (the socket timeout). Long polls are silent for up to 30 s plus the query, and SSE streams
   * write a heartbeat every 15 s, so values of 60 s or less can cut them. 0 = none. A duration
   * (`2m`) or seconds; at most 1 d. Env `HERALD_HTTP_IDLE_TIMEOUT`; default 120 s.
   */
  httpIdleTimeout?: number | string | undefined;
  /**
   * How long an idle keep-alive HTTP connection is kept between requests. Longer than the 60 s idle
   * timeout of common load balancers, so they close first. A duration (`72s`) or seconds; 1 s to
   * 1 d. Env `HERALD_HTTP_KEEP_ALIVE_TIMEOUT`; default 72 s.
   */
  httpKeepAliveTimeout?: number | string | undefined;
  /**
   * Concurrent gRPC Subscribe streams; the next one ends with RESOURCE_EXHAUSTED.
   * Env `HERALD_MAX_GRPC_STREAMS`; default 1000.
   */
  maxGrpcStreams?: number | string | undefined;
  /**
   * Bytes of events read from every gRPC PublishStream and not answered yet (bodies, headers and
   * 256 per event), all streams together; past it the hub reads no more of the streams until
   * answers free room. Env `HERALD_PUBLISH_MAX_BYTES`; default 268435456 (256 MiB); at least the
   * max event size.
   */
  publishMaxBytes?: number | string | undefined;
  /** The same bound in events. Env `HERALD_PUBLISH_MAX_EVENTS`; default 50000. */
  publishMaxEvents?: number | string | undefined;
  /**
   * Events the direct path (PublishStream) stored and not out on herald.events yet; past it the
   * hub answers further events UNAVAILABLE (sent again by the SDK) until the flow catches up.
   * Env `HERALD_PUBLISH_MAX_UNFORWARDED`; default 100000.
   */
  publishMaxUnforwarded?: number | string | undefined;
  /**
   * User pauses active at once; the next create is refused (429 LIMIT_EXCEEDED) until one ends.
   * Env `HERALD_MAX_PAUSES`; default 1000.
   */
  maxPauses?: number | string | undefined;
  /**
   * Durable subscriptions (sleeping ones included); the next create, by REST or by a gRPC open with a
   * selector, is refused (429 / RESOURCE_EXHAUSTED) until one is deleted. Env `HERALD_MAX_SUBSCRIPTIONS`; default 10000.
   */
  maxSubscriptions?: number | string | undefined;
  /**
   * Replays pending or running at once, into the flow and into subscriptions together; the next is
   * refused (429) until one finishes or is cancelled. Env `HERALD_MAX_REPLAYS`; default 16.
   */
  maxReplays?: number | string | undefined;
  /** Concurrent SSE streams; the next is refused (429). Env `HERALD_MAX_SSE_STREAMS`; default 1000. */
  maxSseStreams?: number | string | undefined;
  /** Concurrent long polls (pulls with `wait` above 0); the next is refused (429). Env `HERALD_MAX_LONG_POLLS`; default 1000. */
  maxLongPolls?: number | string | undefined;
  /** pino level. Env `HERALD_LOG_LEVEL`; default `info`. */
  logLevel?: string | undefined;
  /** The longest ttl a pause may be given: a duration, a bare number is seconds. Env `HERALD_PAUSE_MAX_TTL`; default 24 h. */
  pauseMaxTtl?: number | string | undefined;
  /**
   * The most live events an in-memory receiver buffers per consumer of a durable subscription;
   * beyond, the buffer is dropped and the consumer reads the log (nothing lost). Env
   * `HERALD_RECEIVER_MAX_LENGTH`; default 10000.
   */
  receiverMaxLength?: number | string | undefined;
  /**
   * Subscribers' dead letters kept (from herald.dead); past them the oldest are deleted. Env
   * `HERALD_DEAD_LETTERS_MAX`; default 100000.
   */
  deadLettersMax?: number | string | undefined;
  /**
   * `auto` (default): authentication off on a loopback address, required on any other; `required`;
   * `off` (refused on a non-loopback address). Env `HERALD_AUTH`.
   */
  auth?: string | undefined;
  /** A token the hub accepts as an admin, for the first users and for automation: 32 to 4096 printable ASCII characters. Env `HERALD_ADMIN_TOKEN`. */
  adminToken?: string | undefined;
  /** The RabbitMQ management API with admin credentials, e.g. `http://admin:secret@rabbitmq:15672`: RabbitMQ users for Herald's users. Env `HERALD_RABBITMQ_API`. */
  rabbitmqApi?: string | undefined;
  /** Failed authentications per minute a client address may make before 429. Env `HERALD_AUTH_FAILURES_PER_MINUTE`; default 30. */
  authFailuresPerMinute?: number | string | undefined;
  /** `on` (default) or `off`: Prometheus metrics at /metrics and the stats at /api/v1/stats. Env `HERALD_METRICS`. */
  metrics?: string | boolean | undefined;
  /** `auto` (default: readable lines on a terminal, JSON otherwise), `pretty` or `json`. Env `HERALD_LOG_FORMAT`. */
  logFormat?: string | undefined;
  /** Sender×type series the metrics keep; the rest are counted under `other`. Env `HERALD_METRICS_MAX_FLOWS`; default 1000. */
  metricsMaxFlows?: number | string | undefined;
  /** REST publishes per second per token (a burst of as many); 0 = no limit. Env `HERALD_PUBLISH_RATE_PER_TOKEN`; default 1,000. */
  publishRatePerToken?: number | string | undefined;
}

/** The hub's configuration after normalization: every field present and valid. */
export interface HubConfig {
  readonly amqpUrl: string;
  /** A PostgreSQL URL, or undefined for the embedded store in `dataDir`. */
  readonly databaseUrl: string | undefined;
  /** The embedded store's directory (absolute); unused with PostgreSQL. */
  readonly dataDir: string;
  readonly httpPort: number;
  readonly httpHost: string;
  readonly grpcPort: number;
  readonly mode: HubMode;
  readonly queueType: QueueType;
  readonly maxEventBytes: number;
  readonly batchSize: number;
  readonly prefetch: number;
  /** Bytes; prefetch × maxEventBytes fits it. */
  readonly ingestMaxBytes: number;
  /** Connections of the read pool (PostgreSQL). */
  readonly readPoolSize: number;
  /** Seconds (fractional when given in ms: 1500ms is 1.5); the read pool's statement timeout. */
  readonly queryTimeout: number;
  /** Seconds, fractional when given in ms; 0 = none. */
  readonly httpRequestTimeout: number;
  /** Seconds, fractional when given in ms; 0 = none. */
  readonly httpIdleTimeout: number;
  /** Seconds, fractional when given in ms. */
  readonly httpKeepAliveTimeout: number;
  /** Concurrent gRPC Subscribe streams. */
  readonly maxGrpcStreams: number;
  /** PublishStream events waiting for their answers, all streams together: bytes and events. */
  readonly publishMaxBytes: number;
  readonly publishMaxEvents: number;
  /** Events the direct path stored and not out on herald.events yet. */
  readonly publishMaxUnforwarded: number;
  /** Active user pauses. */
  readonly maxPauses: number;
  readonly maxSubscriptions: number;
  /** Pending or running replays, both targets. */
  readonly maxReplays: number;
  readonly maxSseStreams: number;
  /** Pulls that wait, open at once. */
  readonly maxLongPolls: number;
  readonly logLevel: string;
  /** Seconds. */
  readonly pauseMaxTtl: number;
  /** Live events buffered per subscription consumer. */
  readonly receiverMaxLength: number;
  /** Subscribers' dead letters kept at most. */
  readonly deadLettersMax: number;
  readonly auth: AuthMode;
  /** Whether requests need credentials: from `auth` and the listening address. */
  readonly authEnabled: boolean;
  readonly adminToken: string | undefined;
  readonly rabbitmqApi: string | undefined;
  readonly authFailuresPerMinute: number;
  readonly publishRatePerToken: number;
  readonly metrics: boolean;
  readonly logFormat: LogFormat;
  readonly metricsMaxFlows: number;
}

/** Each option, its flag and its environment variable: error messages name the one that was used. */
const NAMES = {
  amqpUrl: { flag: '--amqp-url', env: 'HERALD_AMQP_URL' },
  databaseUrl: { flag: '--database-url', env: 'HERALD_DATABASE_URL' },
  httpPort: { flag: '--http-port', env: 'HERALD_HTTP_PORT' },
  httpHost: { flag: '--http-host', env: 'HERALD_HTTP_HOST' },
  grpcPort: { flag: '--grpc-port', env: 'HERALD_GRPC_PORT' },
  mode: { flag: '--mode', env: 'HERALD_MODE' },
  queueType: { flag: '--queue-type', env: 'HERALD_QUEUE_TYPE' },
  maxEventBytes: { flag: '--max-event-bytes', env: 'HERALD_MAX_EVENT_BYTES' },
  batchSize: { flag: '--batch-size', env: 'HERALD_BATCH_SIZE' },
  prefetch: { flag: '--prefetch', env: 'HERALD_PREFETCH' },
  ingestMaxBytes: { flag: '--ingest-max-bytes', env: 'HERALD_INGEST_MAX_BYTES' },
  readPoolSize: { flag: '--read-pool-size', env: 'HERALD_READ_POOL_SIZE' },
  queryTimeout: { flag: '--query-timeout', env: 'HERALD_QUERY_TIMEOUT' },
  httpRequestTimeout: { flag: '--http-request-timeout', env: 'HERALD_HTTP_REQUEST_TIMEOUT' },
  httpIdleTimeout: { flag: '--http-idle-timeout', env: 'HERALD_HTTP_IDLE_TIMEOUT' },
  httpKeepAliveTimeout: { flag: '--http-keep-alive-timeout', env: 'HERALD_HTTP_KEEP_ALIVE_TIMEOUT' },
  maxGrpcStreams: { flag: '--max-grpc-streams', env: CAPS.grpcStreams.setting },
  publishMaxBytes: { flag: '--publish-max-bytes', env: BUDGETS.publishBytes.setting },
  publishMaxEvents: { flag: '--publish-max-events', env: BUDGETS.publishEvents.setting },
  publishMaxUnforwarded: { flag: '--publish-max-unforwarded', env: BUDGETS.publishUnforwarded.setting },
  maxPauses: { flag: '--max-pauses', env: CAPS.pauses.setting },
  maxSubscriptions: { flag: '--max-subscriptions', env: CAPS.subscriptions.setting },
  maxReplays: { flag: '--max-replays', env: CAPS.replays.setting },
  maxSseStreams: { flag: '--max-sse-streams', env: CAPS.sseStreams.setting },
  maxLongPolls: { flag: '--max-long-polls', env: CAPS.longPolls.setting },
  logLevel: { flag: '--log-level', env: 'HERALD_LOG_LEVEL' },
  pauseMaxTtl: { flag: '--pause-max-ttl', env: 'HERALD_PAUSE_MAX_TTL' },
  receiverMaxLength: { flag: '--receiver-max-length', env: 'HERALD_RECEIVER_MAX_LENGTH' },
  deadLettersMax: { flag: '--dead-letters-max', env: 'HERALD_DEAD_LETTERS_MAX' },
  auth: { flag: '--auth', env: 'HERALD_AUTH' },
  adminToken: { flag: '--admin-token', env: 'HERALD_ADMIN_TOKEN' },
  rabbitmqApi: { flag: '--rabbitmq-api', env: 'HERALD_RABBITMQ_API' },
  authFailuresPerMinute: { flag: '--auth-failures-per-minute', env: 'HERALD_AUTH_FAILURES_PER_MINUTE' },
  publishRatePerToken: { flag: '--publish-rate-per-token', env: 'HERALD_PUBLISH_RATE_PER_TOKEN' },
  metrics: { flag: '--metrics', env: 'HERALD_METRICS' },
  logFormat: { flag: '--log-format', env: 'HERALD_LOG_FORMAT' },
  metricsMaxFlows: { flag: '--metrics-max-flows', env: 'HERALD_METRICS_MAX_FLOWS' },
} as const satisfies Record<keyof HubOptions, { flag: string; env: string }>;

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** Throws INVALID_CONFIG quoting the value, with any password in it (a URL's) redacted. */
function bad(setting: string, value: unknown, expected: string): never {
  const shown = redactSecrets(String(value));
  throw new ValidationError(ErrorCodes.INVALID_CONFIG, `invalid ${setting} ${JSON.stringify(shown)}: ${expected}`, {
    details: { setting, value: shown },
  });
}

/**
 * Merges options (flags), then `env`, then defaults, and validates the result. Throws a
 * ValidationError (INVALID_CONFIG) whose one-line message names the flag or variable at fault, e.g.
 * `invalid HERALD_HTTP_PORT "abc": expected an integer from 0 to 65535`.
 */
export function normalizeConfig(options: HubOptions = {}, env: NodeJS.ProcessEnv = process.env): HubConfig {
  function pick<K extends keyof HubOptions>(key: K): { value: HubOptions[K] | string | undefined; setting: string } {
    const given = options[key];
    if (given !== undefined && given !== '') return { value: given, setting: NAMES[key].flag };
    const fromEnv = env[NAMES[key].env];
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, setting: NAMES[key].env };
    return { value: undefined, setting: NAMES[key].env };
  }
  function int(key: keyof HubOptions, fallback: number, min: number, max: number): number {
    const { value, setting } = pick(key);
    if (value === undefined) return fallback;
    const n = typeof value === 'number' ? value : /^\s*-?\d+\s*$/.test(String(value)) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) bad(setting, value, `expected an integer from ${min} to ${max}`);
    return n;
  }
  // A time setting: a duration (`30s`, `500ms`, `2m`) or, as before units, a whole number of seconds.
  // Returns seconds, fractional when given in ms (1500ms → 1.5): users of it round to milliseconds.
  function seconds(key: keyof HubOptions, fallback: number, min: number, max: number): number {
    const { value, setting } = pick(key);
    if (value === undefined) return fallback;
    return parseDuration(String(value), setting, { bare: 's', min: min * 1000, max: max * 1000 }) / 1000;
  }

  const amqp = pick('amqpUrl');
  const amqpUrl = String(amqp.value ?? 'amqp://guest:guest@127.0.0.1:5672');
  let parsedAmqp: URL | undefined;
  try {
    parsedAmqp = new URL(amqpUrl);
  } catch {
    bad(amqp.setting, amqpUrl, 'expected an amqp:// or amqps:// URL');
  }
  if (parsedAmqp.protocol !== 'amqp:' && parsedAmqp.protocol !== 'amqps:')
    bad(amqp.setting, amqpUrl, 'expected an amqp:// or amqps:// URL');

  const db = pick('databaseUrl');
  let databaseUrl: string | undefined;
  let dataDir = resolve(DEFAULT_DATA_DIR);
  if (db.value !== undefined) {
    const raw = String(db.value);
    if (/^postgres(ql)?:\/\//i.test(raw)) {
      try {
        new URL(raw);
      } catch {
        bad(db.setting, raw, 'expected a postgres:// URL, a file: URL or a directory path');
      }
      databaseUrl = raw;
    } else if (/^file:/i.test(raw)) {
      dataDir = resolve(raw.replace(/^file:(\/\/)?/i, ''));
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
      bad(db.setting, raw, 'expected a postgres:// URL, a file: URL or a directory path');
    } else {
      dataDir = resolve(raw);
    }
  }

  const modeRaw = pick('mode');
  const mode = String(modeRaw.value ?? 'router').toLowerCase();
  if (!HUB_MODES.includes(mode as HubMode)) bad(modeRaw.setting, modeRaw.value, `expected ${HUB_MODES.join(' or ')}`);

  const queueTypePick = pick('queueType');
  const queueType = String(queueTypePick.value ?? 'classic').toLowerCase();
  if (!QUEUE_TYPES.includes(queueType as QueueType))
    bad(queueTypePick.setting, queueTypePick.value, `expected ${QUEUE_TYPES.join(' or ')}`);

  const host = pick('httpHost');
  const httpHost = String(host.value ?? '127.0.0.1');
  if (!/^[A-Za-z0-9.:_[\]-]+$/.test(httpHost)) bad(host.setting, httpHost, 'expected a host name or IP address');

  const level = pick('logLevel');
  const logLevel = String(level.value ?? 'info').toLowerCase();
  if (!LOG_LEVELS.has(logLevel)) bad(level.setting, level.value, `expected one of ${[...LOG_LEVELS].join(', ')}`);

  // RabbitMQ may push `prefetch` messages of up to maxEventBytes each before the hub acknowledges
  // any: the bound in bytes sets the default prefetch, and an explicit one must fit it.
  const maxEventBytes = int('maxEventBytes', DEFAULT_MAX_EVENT_BYTES, 1, 128 * 1024 * 1024);
  const ingestBound = pick('ingestMaxBytes');
  const ingestMaxBytes = int('ingestMaxBytes', 256 * 1024 * 1024, 1, 64 * 1024 ** 3);
  const eventSetting = pick('maxEventBytes').setting;
  if (ingestMaxBytes < maxEventBytes) {
    bad(ingestBound.setting, ingestMaxBytes, `must be at least the max event size (${eventSetting}, ${maxEventBytes} bytes)`);
  }
  const fits = Math.floor(ingestMaxBytes / maxEventBytes);
  const prefetchPick = pick('prefetch');
  const prefetch = int('prefetch', Math.max(1, Math.min(2000, fits)), 1, 65_535);
  if (prefetchPick.value !== undefined && prefetch > fits) {
    bad(
      prefetchPick.setting,
      prefetch,
      `${prefetch} messages of up to ${maxEventBytes} bytes (${eventSetting}) exceed ${ingestBound.setting} (${ingestMaxBytes} bytes): at most ${fits}`,
    );
  }
  const batchPick = pick('batchSize');
  const batchSize = int('batchSize', Math.min(500, prefetch), 1, 10_000);
  if (prefetch < batchSize) {
    if (prefetchPick.value !== undefined) bad(prefetchPick.setting, prefetch, `must be at least the batch size (${batchSize})`);
    bad(
      batchPick.setting,
      batchSize,
      fits < 2000
        ? `must be at most the prefetch (${prefetch}, what ${ingestBound.setting} / ${eventSetting} allows); lower it or raise ${ingestBound.setting}`
        : `must be at most the prefetch (${prefetch})`,
    );
  }
  const publishMaxBytes = int('publishMaxBytes', BUDGETS.publishBytes.default, 1, 64 * 1024 ** 3);
  if (publishMaxBytes < maxEventBytes) {
    bad(pick('publishMaxBytes').setting, publishMaxBytes, `must be at least the max event size (${eventSetting}, ${maxEventBytes} bytes)`);
  }

  const authPick = pick('auth');
  const auth = String(authPick.value ?? 'auto').toLowerCase() as AuthMode;
  if (!AUTH_MODES.includes(auth)) bad(authPick.setting, authPick.value, `expected ${AUTH_MODES.join(', ')}`);
  let authOn: boolean;
  try {
    authOn = authEnabled(auth, httpHost);
  } catch (err) {
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, (err as Error).message.replace('HERALD_AUTH=off', `${authPick.setting}=off`), {
      details: { setting: authPick.setting },
    });
  }
  const adminPick = pick('adminToken');
  const adminToken = adminPick.value === undefined ? undefined : String(adminPick.value);
  // Never quoted in the message: it is a secret.
  if (adminToken !== undefined && !/^[\x21-\x7e]{32,4096}$/.test(adminToken))
    throw new ValidationError(
      ErrorCodes.INVALID_CONFIG,
      `invalid ${adminPick.setting}: expected 32 to 4096 printable ASCII characters without spaces, e.g. from: openssl rand -base64 32`,
      { details: { setting: adminPick.setting } },
    );
  const apiPick = pick('rabbitmqApi');
  const rabbitmqApi = apiPick.value === undefined ? undefined : String(apiPick.value);
  if (rabbitmqApi !== undefined && !/^https?:\/\/[^/]/i.test(rabbitmqApi))
    bad(apiPick.setting, rabbitmqApi, 'expected the management API URL with admin credentials, e.g. http://admin:secret@127.0.0.1:15672');

  const formatPick = pick('logFormat');
  const logFormat = String(formatPick.value ?? 'auto').toLowerCase() as LogFormat;
  if (!LOG_FORMATS.includes(logFormat)) bad(formatPick.setting, formatPick.value, `expected ${LOG_FORMATS.join(', ')}`);
  const metricsPick = pick('metrics');
  const metricsText = String(metricsPick.value ?? 'on').toLowerCase();
  if (!['on', 'off', 'true', 'false'].includes(metricsText)) bad(metricsPick.setting, metricsPick.value, 'expected on or off');

  return {
    amqpUrl,
    databaseUrl,
    dataDir,
    httpPort: int('httpPort', 8080, 0, 65_535),
    httpHost,
    grpcPort: int('grpcPort', 50051, 0, 65_535),
    mode: mode as HubMode,
    queueType: queueType as QueueType,
    maxEventBytes,
    batchSize,
    prefetch,
    ingestMaxBytes,
    readPoolSize: int('readPoolSize', 4, 1, 100),
    queryTimeout: seconds('queryTimeout', 30, 1, 3600),
    httpRequestTimeout: seconds('httpRequestTimeout', 60, 0, 86_400),
    httpIdleTimeout: seconds('httpIdleTimeout', 120, 0, 86_400),
    httpKeepAliveTimeout: seconds('httpKeepAliveTimeout', 72, 1, 86_400),
    maxGrpcStreams: int('maxGrpcStreams', CAPS.grpcStreams.default, 1, 100_000),
    publishMaxBytes,
    publishMaxEvents: int('publishMaxEvents', BUDGETS.publishEvents.default, 1, 10_000_000),
    publishMaxUnforwarded: int('publishMaxUnforwarded', BUDGETS.publishUnforwarded.default, 1, 100_000_000),
    maxPauses: int('maxPauses', CAPS.pauses.default, 1, 100_000),
    maxSubscriptions: int('maxSubscriptions', CAPS.subscriptions.default, 1, 10_000_000),
    maxReplays: int('maxReplays', CAPS.replays.default, 1, 1000),
    maxSseStreams: int('maxSseStreams', CAPS.sseStreams.default, 1, 100_000),
    maxLongPolls: int('maxLongPolls', CAPS.longPolls.default, 1, 100_000),
    logLevel,
    pauseMaxTtl: seconds('pauseMaxTtl', 86_400, 1, 30 * 86_400),
    receiverMaxLength: int('receiverMaxLength', 10_000, 1, 10_000_000),
    deadLettersMax: int('deadLettersMax', DEFAULT_DEAD_LETTERS_MAX, 1, 100_000_000),
    auth,
    authEnabled: authOn,
    adminToken,
    rabbitmqApi,
    authFailuresPerMinute: int('authFailuresPerMinute', 30, 1, 100_000),
    publishRatePerToken: int('publishRatePerToken', DEFAULT_PUBLISH_RATE_PER_TOKEN, 0, 1_000_000),
    metrics: metricsText === 'on' || metricsText === 'true',
    logFormat,
    metricsMaxFlows: int('metricsMaxFlows', DEFAULT_MAX_FLOWS, 1, 100_000),
  };
}
