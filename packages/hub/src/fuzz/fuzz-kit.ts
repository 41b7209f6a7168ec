import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EVENTS_EXCHANGE, INGEST_EXCHANGE } from '@herald/core';
import { type RouterHub, rssMiB, sampleRss, startRouterHub } from '@herald/testing';
import { type ChannelModel, type ConfirmChannel, connect } from 'amqplib';

// What every edge's fuzzer shares: its settings, a router hub on PostgreSQL, and the invariant
// checked after every batch of inputs.

/** How a fuzz run is sized; each comes from the environment so a failure reproduces and CI stays bounded. */
export interface FuzzSettings {
  /** Inputs per edge. `HERALD_FUZZ_RUNS`, default 5000. */
  readonly runs: number;
  /** Inputs between two checks of the invariant. `HERALD_FUZZ_BATCH`, default 250; 1 finds the input that broke it. */
  readonly batch: number;
  /** fast-check's seed. `HERALD_FUZZ_SEED`, default random; printed at start. */
  readonly seed: number;
  /** Longest an edge may take, inputs and checks (shrinking comes on top). `HERALD_FUZZ_TIME_LIMIT` in seconds, default 120. */
  readonly timeLimitMs: number;
  /** Most resident memory the hub may reach. `HERALD_FUZZ_RSS_MIB`, default 768 (see DEFAULT_RSS_MIB). */
  readonly rssMiB: number;
  /** Distinct failures shrunk after the run (each within SHRINK_MS). `HERALD_FUZZ_SHRINKS`, default 5. */
  readonly shrinks: number;
}

/**
 * The hub's resident memory bound. An idle router hub (node, tsx, fastify, grpc-js, pg) sits near
 * 200 MiB and the fuzzers' inputs peak near 400 MiB (bodies up to 1.1 MiB, 100 KB strings, 40,000
 * pattern selectors); 768 MiB leaves room for the garbage collector's slack while still catching
 * what an unbounded buffer does within one run. The ingest alone may hold up to
 * HERALD_INGEST_MAX_BYTES (256 MiB by default, which sets the default prefetch: 256 messages of up
 * to 1 MiB), so a hub that let its prefetch or its held events grow past their bounds in bytes
 * would cross this one.
 */
const DEFAULT_RSS_MIB = 768;

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}=${JSON.stringify(raw)}: expected a positive integer`);
  return n;
}

/** The settings from the environment; throws naming the variable when one is not a positive integer. */
export function fuzzSettings(): FuzzSettings {
  const seedRaw = process.env.HERALD_FUZZ_SEED;
  let seed: number;
  if (seedRaw === undefined || seedRaw === '') seed = (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  else {
    seed = Number(seedRaw);
    if (!Number.isSafeInteger(seed)) throw new Error(`HERALD_FUZZ_SEED=${JSON.stringify(seedRaw)}: expected an integer`);
  }
  return {
    runs: positiveInt('HERALD_FUZZ_RUNS', 5000),
    batch: positiveInt('HERALD_FUZZ_BATCH', 250),
    seed,
    timeLimitMs: positiveInt('HERALD_FUZZ_TIME_LIMIT', 120) * 1000,
    rssMiB: positiveInt('HERALD_FUZZ_RSS_MIB', DEFAULT_RSS_MIB),
    shrinks: positiveInt('HERALD_FUZZ_SHRINKS', 5),
  };
}

/** Where reports put what is too large to print: whole inputs, batches, the hub's log. */
export const FUZZ_DIR = join(tmpdir(), 'herald-fuzz');

/** How long a good event may take to be stored and delivered (the invariant's 5 s). */
const PROBE_MS = 5000;
/** The probe's sender and type: no fuzzer generates them, so no fuzzed pause holds it. */
const PROBE_SENDER = 'fuzzprobe';
const PROBE_TYPE = 'probe.ok';

/** One thing wrong after a batch, in a sentence the report prints: the invariant broke. */
export type Violation = string;

/** A rule one earlier input broke, found by a check after its batch (an event accepted but not stored). */
export interface Finding {
  readonly signature: string;
  /** The input's index in the run. */
  readonly index: number;
  readonly input: unknown;
  readonly detail?: string | undefined;
}

/** An event an edge accepted (REST 202, gRPC OK), to be read back once the probe after it is stored. */
export interface Accepted {
  readonly id: string;
  readonly index: number;
  readonly input: unknown;
  /** The edge and call that accepted it, for the signature: `POST /api/v1/events`, `Publish`. */
  readonly via: string;
}

/**
 * The events an edge answered as accepted since the last check. takeUnstored() gives findings for
 * those that do not read back by id (the probe published after them is stored, so they would be
 * too) and starts the list over. Resolves; a hub that does not answer is the invariant's business.
 */
export class AcceptedEvents {
  private list: Accepted[] = [];

  add(...accepted: Accepted[]): void {
    for (const a of accepted) this.list.push(a);
  }

  takeUnstored(http: string): Promise<Finding[]> {
    const list = this.list;
    this.list = [];
    return unstored(http, list);
  }
}

async function unstored(http: string, accepted: readonly Accepted[]): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const a of accepted) {
    const r = await getText(`${http}/api/v1/events/by-id/${encodeURIComponent(a.id)}`);
    if ('status' in r && r.status === 200) continue;
    findings.push({
      signature: `${a.via} accepted an event that was not stored: GET /api/v1/events/by-id/{id} answered ${'status' in r ? r.status : r.error}`,
      index: a.index,
      input: a.input,
      detail: `${a.id}: ${describeAnswer(r)}`,
    });
  }
  return findings;
}

/** A router hub under fuzzing, with the invariant. */
export interface FuzzHub {
  readonly fx: RouterHub;
  /**
   * The invariant: the hub process lives, `/readyz` answers 200, a good event published to
   * herald.ingest afterwards (plain amqplib, fresh UUID) is stored (GET by id) and delivered to a
   * queue bound to herald.events within 5 s, the log since the previous check reads back through
   * GET /api/v1/events, and the hub's memory stayed under the bound. Resolves with what broke
   * (empty: it holds); never rejects.
   */
  check(): Promise<Violation[]>;
  /** Warning and error lines the hub logged so far, by message, with counts. */
  logged(): Map<string, number>;
  /** Peak resident memory seen, MiB. */
  peakRss(): number;
  /** Writes the hub's whole output so far to a file (for the report); resolves with its path. */
  saveLog(name: string): string;
  close(): Promise<void>;
}

/** A GET answered or not: status and body text, or the error that stood for the answer. */
export async function getText(url: string, timeoutMs = 5000): Promise<{ status: number; text: string } | { error: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text() };
  } catch (err) {
    return { error: (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : String(err) };
  }
}

const describeAnswer = (r: Awaited<ReturnType<typeof getText>>) =>
  'error' in r ? r.error : `${r.status} ${r.text.length > 300 ? `${r.text.slice(0, 300)}…` : r.text}`;

/** Starts a router hub on PostgreSQL and the probe's publisher and receiver queue. */
export async function startFuzzHub(prefix: string, settings: FuzzSettings): Promise<FuzzHub> {
  // Info level at least: the fixture waits for the "hub running" line.
  const level = process.env.HERALD_FUZZ_HUB_LOG_LEVEL;
  const fx = await startRouterHub(prefix, level ? { HERALD_LOG_LEVEL: level } : {});
  let conn: ChannelModel | undefined;
  try {
    conn = await connect(fx.vhost.url, { noDelay: true });
    conn.on('error', () => undefined);
    const ch: ConfirmChannel = await conn.createConfirmChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
    await ch.bindQueue(queue, EVENTS_EXCHANGE, `${PROBE_SENDER}.#`);
    const delivered = new Set<string>();
    await ch.consume(queue, (m) => void (m?.properties.messageId && delivered.add(String(m.properties.messageId))), { noAck: true });
    return fuzzHub(fx, conn, ch, delivered, settings);
  } catch (err) {
    await conn?.close().catch(() => undefined);
    await fx.close();
    throw err;
  }
}

function fuzzHub(fx: RouterHub, conn: ChannelModel, ch: ConfirmChannel, delivered: Set<string>, settings: FuzzSettings): FuzzHub {
  const pid = fx.hub.child.pid as number;
  let sampler = sampleRss(pid);
  let peak = rssMiB(pid) ?? 0;
  let lastOffset = 0n;
  let probes = 0;
  let logRead = 0;
  const logged = new Map<string, number>();

  const readLog = () => {
    const out = fx.hub.output();
    const end = out.lastIndexOf('\n') + 1;
    for (const line of out.slice(logRead, end).split('\n')) {
      if (!line) continue;
      let key: string;
      try {
        const l = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } | string; reason?: string };
        if ((l.level ?? 0) < 40) continue;
        const err = typeof l.err === 'string' ? l.err : (l.err?.message ?? l.reason ?? '');
        key = `${l.level === 40 ? 'warn' : 'error'}: ${l.msg ?? ''}${err ? `: ${err}` : ''}`;
      } catch {
        key = `unparsed: ${line}`;
      }
      key = key.length > 400 ? `${key.slice(0, 400)}…` : key;
      logged.set(key, (logged.get(key) ?? 0) + 1);
    }
    logRead = end;
  };

  const publishProbe = (id: string) =>
    new Promise<string | undefined>((resolve) => {
      try {
        ch.publish(
          INGEST_EXCHANGE,
          `${PROBE_SENDER}.${PROBE_TYPE}`,
          Buffer.from(JSON.stringify({ probe: ++probes })),
          { messageId: id, appId: PROBE_SENDER, type: PROBE_TYPE, contentType: 'application/json', persistent: true },
          (err) => resolve(err ? `RabbitMQ did not confirm the probe: ${String(err)}` : undefined),
        );
      } catch (err) {
        resolve(`the probe could not be published: ${String(err)}`);
      }
    });

  return {
    fx,
    async check() {
      const violations: Violation[] = [];
      try {
        const code = await Promise.race([fx.hub.exited, sleep(0).then(() => undefined)]);
        if (code !== undefined) return [`the hub process exited (${code})`];
        const ready = await getText(`${fx.http}/readyz`);
        if ('error' in ready || ready.status !== 200) violations.push(`/readyz answered ${describeAnswer(ready)}`);

        const id = randomUUID();
        const t0 = Date.now();
        const refused = await publishProbe(id);
        if (refused) return [...violations, refused];
        let stored: { status: number; text: string } | { error: string } = { error: 'not asked' };
        while (Date.now() - t0 < PROBE_MS) {
          if (!('status' in stored && stored.status === 200)) stored = await getText(`${fx.http}/api/v1/events/by-id/${id}`, PROBE_MS);
          if ('status' in stored && stored.status === 200 && delivered.has(id)) break;
          await sleep(25);
        }
        const isStored = 'status' in stored && stored.status === 200;
        if (!isStored)
          violations.push(
            `a good event published afterwards (${id}) was not stored within ${PROBE_MS} ms: GET by id answered ${describeAnswer(stored)}`,
          );
        if (!delivered.has(id))
          violations.push(`a good event published afterwards (${id}) was not delivered to herald.events within ${PROBE_MS} ms`);
        delivered.delete(id);

        if ('text' in stored && isStored) {
          const probeOffset = BigInt((JSON.parse(stored.text) as { offset: string }).offset);
          // Every event stored since the last check must read back: one that cannot breaks every later read of its page.
          let after = lastOffset;
          while (after < probeOffset) {
            const page = await getText(`${fx.http}/api/v1/events?after=${after}&limit=1000`, PROBE_MS);
            if (!('status' in page) || page.status !== 200) {
              violations.push(
                `the log after offset ${after} does not read back: GET /api/v1/events?after=${after}&limit=1000 answered ${describeAnswer(page)}`,
              );
              break;
            }
            const { next } = JSON.parse(page.text) as { next: string | null };
            if (next === null) break;
            after = BigInt(next);
          }
          lastOffset = probeOffset;
        }
      } catch (err) {
        violations.push(`the check itself failed: ${String(err)}`);
      }
      const now = rssMiB(pid) ?? 0;
      const batchPeak = Math.max(sampler.stop(), now);
      sampler = sampleRss(pid);
      peak = Math.max(peak, batchPeak);
      if (batchPeak > settings.rssMiB)
        violations.push(`the hub's resident memory reached ${batchPeak} MiB, over the bound of ${settings.rssMiB} MiB`);
      readLog();
      return violations;
    },
    logged() {
      readLog();
      return logged;
    },
    peakRss: () => peak,
    saveLog(name) {
      mkdirSync(FUZZ_DIR, { recursive: true });
      const file = join(FUZZ_DIR, `${name}-hub-${process.pid}.log`);
      writeFileSync(file, fx.hub.output());
      return file;
    },
    async close() {
      sampler.stop();
      await conn.close().catch(() => undefined);
      await fx.close();
    },
  };
}
