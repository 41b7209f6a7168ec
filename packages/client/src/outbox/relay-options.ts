import { DEFAULT_MAX_EVENT_BYTES, ErrorCodes, ValidationError } from '@herald/core';
import type pg from 'pg';
import { bad, bool, callback, int, type NormalizedConnection, normalizeConnection, record, rejectUnknown } from '../options.ts';
import type { ConnectionOptions } from '../types.ts';
import { type OutboxTableOptions, type TableNames, tableNames } from './schema.ts';

export interface OutboxRelayOptions extends ConnectionOptions, OutboxTableOptions {
  /**
   * The service's database: a pg.Pool (the relay takes one connection from it for as long as it
   * runs, and discards it when it stops) or a `postgres://` connection string. Required.
   */
  database: pg.Pool | string;
  /** Most rows published per round, in one pipelined run of confirms. Default 100. */
  batchSize?: number;
  /** Most bytes of event bodies in one round (at least one row is always taken). Default 16 MiB. */
  maxBatchBytes?: number;
  /**
   * How often to look for rows without a NOTIFY, ms: a fallback, since `add` wakes the relay at
   * commit. Default 1000.
   */
  pollIntervalMs?: number;
  /** How often a relay on standby tries to take the lease, ms. Default 2000. */
  standbyIntervalMs?: number;
  /**
   * How long published rows are kept (marked `sent_at`) before they are deleted, ms; 0 deletes
   * each row as soon as RabbitMQ confirmed it. Default 3,600,000 (one hour).
   */
  retentionMs?: number;
  /**
   * Refusals (a nack, or RabbitMQ closing the channel over the publish) of one row, published on
   * its own, before it is parked (`failed_at` set, skipped from then on) so the rows behind it go
   * on. 0 = never park, retry forever. Default 10.
   */
  maxAttempts?: number;
  /** First delay after a refused or failed round, ms; it doubles up to 30 s. Default 1000. */
  retryDelayMs?: number;
  /** A round not confirmed within this many ms is abandoned and retried. Default 30,000. */
  confirmTimeoutMs?: number;
  /** Largest event body the relay publishes; a larger row is parked. Default 1 MiB. */
  maxEventBytes?: number;
  /** Set AMQP `user_id` to the URL's user, as the publisher does. Default true. */
  setUserId?: boolean;
  /** Declare Herald's exchanges on connect instead of only checking `herald.ingest`. Default false. */
  declareTopology?: boolean;
  /**
   * Told about trouble that is not a row's: a lost connection to RabbitMQ or PostgreSQL (UNAVAILABLE),
   * a missing exchange (PUBLISH_FAILED). Default: ignored (the relay retries by itself).
   */
  onError?: (err: Error) => void;
}

export interface NormalizedRelay extends NormalizedConnection {
  readonly database: pg.Pool | string;
  readonly names: TableNames;
  readonly batchSize: number;
  readonly maxBatchBytes: number;
  readonly pollIntervalMs: number;
  readonly standbyIntervalMs: number;
  readonly retentionMs: number;
  readonly maxAttempts: number;
  readonly retryDelayMs: number;
  readonly confirmTimeoutMs: number;
  readonly maxEventBytes: number;
  readonly setUserId: boolean;
  readonly declareTopology: boolean;
  readonly onError: ((err: Error) => void) | undefined;
}

const RELAY_FIELDS = [
  'url',
  'reconnectInitialDelayMs',
  'reconnectMaxDelayMs',
  'connectionName',
  'schema',
  'outboxTable',
  'inboxTable',
  'database',
  'batchSize',
  'maxBatchBytes',
  'pollIntervalMs',
  'standbyIntervalMs',
  'retentionMs',
  'maxAttempts',
  'retryDelayMs',
  'confirmTimeoutMs',
  'maxEventBytes',
  'setUserId',
  'declareTopology',
  'onError',
] as const;

const DAY_MS = 86_400_000;

/** The one normalizer of OutboxRelayOptions: throws a ValidationError (INVALID_CONFIG) naming the first bad field. */
export function normalizeRelayOptions(options: OutboxRelayOptions): NormalizedRelay {
  const o = record(options, 'outbox relay');
  rejectUnknown(o, RELAY_FIELDS, 'outbox relay');
  const database = o.database;
  if (typeof database === 'string') {
    if (!/^postgres(ql)?:\/\//.test(database)) bad('database', 'expected a pg.Pool or a postgres:// URL', '(a string)');
  } else if (typeof database !== 'object' || database === null || typeof (database as { connect?: unknown }).connect !== 'function') {
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid option database: required, a pg.Pool or a postgres:// URL', {
      details: { field: 'database' },
    });
  }
  return {
    ...normalizeConnection(options, 'outbox-relay'),
    database: database as pg.Pool | string,
    names: tableNames(options),
    batchSize: int(o, 'batchSize', 100, 1, 10_000),
    maxBatchBytes: int(o, 'maxBatchBytes', 16 * 1024 * 1024, 1),
    pollIntervalMs: int(o, 'pollIntervalMs', 1000, 1, DAY_MS),
    standbyIntervalMs: int(o, 'standbyIntervalMs', 2000, 1, DAY_MS),
    retentionMs: int(o, 'retentionMs', 3_600_000, 0, 3650 * DAY_MS),
    maxAttempts: int(o, 'maxAttempts', 10, 0, 1_000_000),
    retryDelayMs: int(o, 'retryDelayMs', 1000, 0, DAY_MS),
    confirmTimeoutMs: int(o, 'confirmTimeoutMs', 30_000, 1, DAY_MS),
    maxEventBytes: int(o, 'maxEventBytes', DEFAULT_MAX_EVENT_BYTES, 1),
    setUserId: bool(o, 'setUserId', true),
    declareTopology: bool(o, 'declareTopology', false),
    onError: callback(o, 'onError'),
  };
}
