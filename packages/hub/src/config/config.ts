import { resolve } from 'node:path';
import { DEFAULT_MAX_EVENT_BYTES, ErrorCodes, HUB_MODES, type HubMode, ValidationError } from '@herald/core';
import { DEFAULT_DATA_DIR } from '../store/index.ts';

export type { HubMode };

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
  /** Largest event body in bytes; larger ones are dead letters. Env `HERALD_MAX_EVENT_BYTES`; default 1048576 (1 MiB). */
  maxEventBytes?: number | string | undefined;
  /** Most events per store transaction. Env `HERALD_BATCH_SIZE`; default 500. */
  batchSize?: number | string | undefined;
  /**
   * Unacknowledged ingest messages RabbitMQ may push to the hub (the window batches are cut from;
   * it bounds the hub's memory at prefetch × max event size). Env `HERALD_PREFETCH`; default 2000.
   */
  prefetch?: number | string | undefined;
  /** pino level. Env `HERALD_LOG_LEVEL`; default `info`. */
  logLevel?: string | undefined;
  /** The longest ttl a pause may be given, in seconds. Env `HERALD_PAUSE_MAX_TTL`; default 86400 (24 h). */
  pauseMaxTtl?: number | string | undefined;
  /**
   * The most messages a subscription receiver queue keeps (`x-max-length`, the oldest dropped
   * beyond; subscriptions then read the log). Env `HERALD_RECEIVER_MAX_LENGTH`; default 10000.
   */
  receiverMaxLength?: number | string | undefined;
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
  readonly maxEventBytes: number;
  readonly batchSize: number;
  readonly prefetch: number;
  readonly logLevel: string;
  /** Seconds. */
  readonly pauseMaxTtl: number;
  /** Messages per receiver queue. */
  readonly receiverMaxLength: number;
}

/** Each option, its flag and its environment variable: error messages name the one that was used. */
const NAMES = {
  amqpUrl: { flag: '--amqp-url', env: 'HERALD_AMQP_URL' },
  databaseUrl: { flag: '--database-url', env: 'HERALD_DATABASE_URL' },
  httpPort: { flag: '--http-port', env: 'HERALD_HTTP_PORT' },
  httpHost: { flag: '--http-host', env: 'HERALD_HTTP_HOST' },
  grpcPort: { flag: '--grpc-port', env: 'HERALD_GRPC_PORT' },
  mode: { flag: '--mode', env: 'HERALD_MODE' },
  maxEventBytes: { flag: '--max-event-bytes', env: 'HERALD_MAX_EVENT_BYTES' },
  batchSize: { flag: '--batch-size', env: 'HERALD_BATCH_SIZE' },
  prefetch: { flag: '--prefetch', env: 'HERALD_PREFETCH' },
  logLevel: { flag: '--log-level', env: 'HERALD_LOG_LEVEL' },
  pauseMaxTtl: { flag: '--pause-max-ttl', env: 'HERALD_PAUSE_MAX_TTL' },
  receiverMaxLength: { flag: '--receiver-max-length', env: 'HERALD_RECEIVER_MAX_LENGTH' },
} as const satisfies Record<keyof HubOptions, { flag: string; env: string }>;

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

function bad(setting: string, value: unknown, expected: string): never {
  throw new ValidationError(ErrorCodes.INVALID_CONFIG, `invalid ${setting} ${JSON.stringify(String(value))}: ${expected}`, {
    details: { setting, value },
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

  const host = pick('httpHost');
  const httpHost = String(host.value ?? '127.0.0.1');
  if (!/^[A-Za-z0-9.:_[\]-]+$/.test(httpHost)) bad(host.setting, httpHost, 'expected a host name or IP address');

  const level = pick('logLevel');
  const logLevel = String(level.value ?? 'info').toLowerCase();
  if (!LOG_LEVELS.has(logLevel)) bad(level.setting, level.value, `expected one of ${[...LOG_LEVELS].join(', ')}`);

  const batchSize = int('batchSize', 500, 1, 10_000);
  const prefetch = int('prefetch', 2000, 1, 65_535);
  if (prefetch < batchSize) bad(pick('prefetch').setting, prefetch, `must be at least the batch size (${batchSize})`);

  return {
    amqpUrl,
    databaseUrl,
    dataDir,
    httpPort: int('httpPort', 8080, 0, 65_535),
    httpHost,
    grpcPort: int('grpcPort', 50051, 0, 65_535),
    mode: mode as HubMode,
    maxEventBytes: int('maxEventBytes', DEFAULT_MAX_EVENT_BYTES, 1, 128 * 1024 * 1024),
    batchSize,
    prefetch,
    logLevel,
    pauseMaxTtl: int('pauseMaxTtl', 86_400, 1, 30 * 86_400),
    receiverMaxLength: int('receiverMaxLength', 10_000, 1, 10_000_000),
  };
}
