import { redactUrl } from '@herald/core';
import { durationFlag, UsageError } from '../usage.ts';
import { RECEIVER_KINDS, type ReceiverKind } from './receivers.ts';

/** The settings of one `herald bench` run, normalized. */
export interface BenchOptions {
  /** AMQP URL. Default: `HERALD_AMQP_URL`, else `amqp://guest:guest@127.0.0.1:5672`. */
  url: string;
  /** Senders s1…sN, one publisher (own connection) each. Default 3. */
  senders: number;
  /** Types t1…tM. Default 4. */
  types: number;
  /** Events per second over all senders, or `max` (flat out). Default `max`. */
  rate: number | 'max';
  /** Events to send in all. Default 10,000 unless `durationMs` is given. */
  count?: number | undefined;
  /** Send for this long instead of a count. */
  durationMs?: number | undefined;
  /** Event body size in bytes. Default 1024. */
  size: number;
  /** Seed of the type choice. Default 1. */
  seed: number;
  /** Publishes awaiting a confirm at most, per sender. Default 1000. */
  inFlight: number;
  /** Receiver prefetch. Default 500. */
  prefetch: number;
  /** After the last confirm, how long to wait for receivers with no delivery before calling the rest lost, ms. Default 5000. */
  drainTimeoutMs: number;
  /** How long the probe event may take to reach the `all` receiver before the run fails, ms. Default 5000. */
  warmupMs: number;
  /** Also measure raw amqplib. Default false. */
  baseline: boolean;
  /**
   * Which receiver kinds run. Default all five. `all` alone makes Herald's side do the same broker
   * work as the baseline (one queue), so the throughput ratios compare like with like.
   */
  receivers: ReceiverKind[];
  /** One JSON object on stdout instead of a table. Default false. */
  json: boolean;
  /** No progress lines on stderr. Default false. */
  quiet: boolean;
}

/** The raw option values commander hands over (strings as typed). */
export interface RawBenchOptions {
  amqpUrl?: string;
  senders?: string;
  types?: string;
  rate?: string;
  count?: string;
  duration?: string;
  size?: string;
  seed?: string;
  inFlight?: string;
  prefetch?: string;
  drainTimeout?: string;
  warmup?: string;
  baseline?: boolean;
  receivers?: string;
  json?: boolean;
  quiet?: boolean;
}

export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

function int(name: string, raw: string | undefined, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`invalid --${name} ${JSON.stringify(raw)}: expected an integer from ${min} to ${max}`);
  return n;
}

function positive(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`invalid --${name} ${JSON.stringify(raw)}: expected a positive number`);
  return n;
}

/**
 * Merges defaults (then `env.HERALD_AMQP_URL`) into the raw options and rejects bad or conflicting
 * ones with a UsageError naming the option. Durations take units (`20s`, `1m30s`, `500ms`); a bare
 * number is seconds for --duration and milliseconds for --drain-timeout and --warmup, as before.
 */
export function normalizeBenchOptions(raw: RawBenchOptions, env: Record<string, string | undefined> = process.env): BenchOptions {
  if (raw.count !== undefined && raw.duration !== undefined) throw new UsageError('--count and --duration exclude each other: give one');
  const rate = raw.rate === undefined || raw.rate === 'max' ? 'max' : positive('rate', raw.rate);
  const durationMs = raw.duration === undefined ? undefined : durationFlag(raw.duration, '--duration', { bare: 's' });
  return {
    url: raw.amqpUrl || env.HERALD_AMQP_URL || DEFAULT_AMQP_URL,
    senders: int('senders', raw.senders, 3, 1, 1000),
    types: int('types', raw.types, 4, 1, 1000),
    rate,
    count: durationMs === undefined ? int('count', raw.count, 10_000, 1) : undefined,
    durationMs,
    size: int('size', raw.size, 1024, 0, 1024 * 1024),
    seed: int('seed', raw.seed, 1, 0, 0xffffffff),
    inFlight: int('in-flight', raw.inFlight, 1000, 1),
    prefetch: int('prefetch', raw.prefetch, 500, 1, 65535),
    drainTimeoutMs: raw.drainTimeout === undefined ? 5000 : durationFlag(raw.drainTimeout, '--drain-timeout', { bare: 'ms', min: 0 }),
    warmupMs: raw.warmup === undefined ? 5000 : durationFlag(raw.warmup, '--warmup', { bare: 'ms', min: 100 }),
    baseline: raw.baseline === true,
    receivers: receiverKinds(raw.receivers),
    json: raw.json === true,
    quiet: raw.quiet === true,
  };
}

function receiverKinds(raw: string | undefined): ReceiverKind[] {
  if (raw === undefined) return [...RECEIVER_KINDS];
  const kinds = raw.split(',').map((k) => k.trim());
  for (const k of kinds) {
    if (!(RECEIVER_KINDS as readonly string[]).includes(k)) {
      throw new UsageError(`invalid --receivers ${JSON.stringify(raw)}: ${JSON.stringify(k)} is not one of ${RECEIVER_KINDS.join(', ')}`);
    }
  }
  // The probe that checks the flow before the run goes to the `all` receiver.
  if (!kinds.includes('all')) throw new UsageError(`invalid --receivers ${JSON.stringify(raw)}: it must include all`);
  return [...new Set(kinds)] as ReceiverKind[];
}

/** The URL with its password masked, for messages. */
export const safeUrl = redactUrl;
