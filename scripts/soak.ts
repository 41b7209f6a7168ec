/**
 * `npm run soak -- [--count N] [--quick] [--rate R] [--window W] [--no-grpc] [--out PATH]`: a long
 * run through a router hub on PostgreSQL, sampled every second, to see whether memory, the event
 * loop and the backlog stay flat (docs/reliability.md, "Long run").
 *
 * Load: two plain amqplib publishers with confirms (4 senders × 2 types, bodies of 1 KiB) send
 * --count events (default 1,000,000; --quick 100,000) to herald.ingest. By default flat out with a
 * bounded window: no more than --window events (default 4,000) sent and not yet at the receiver,
 * so the publishers run at whatever rate the router sustains and the herald.ingest backlog cannot
 * grow past the window. --rate R instead paces them at R events/s (at most 2,000 unconfirmed per
 * publisher), whatever the router does: a rate above what it sustains shows as a growing backlog.
 * A receiver queue bound `#` to herald.events consumes everything, and a durable subscription
 * (`*:*`, from the start) is read over gRPC at the same time (--no-grpc: without it).
 *
 * Every second: the hub's RSS (/proc), its event-loop delay over that second and the log's head
 * offset (its /metrics: prom-client's nodejs_eventloop_lag_p50/p99/max_seconds, whose histogram
 * each scrape resets, and herald_log_head_offset), herald.ingest's depth (the management API, which
 * RabbitMQ refreshes every 5 s by default) and the receiver's count. At the end it waits for
 * everything confirmed to arrive and accounts for every confirmed id: in the log once with dense
 * offsets, at the receiver, at the subscription. Prints the summary (soak-stats.ts), writes the
 * samples as JSON to --out (a file ending in .json, or a directory; default /tmp) and exits 1 when
 * anything confirmed was lost. Nothing is drawn at random (no seed). Needs RabbitMQ with its
 * management API and PostgreSQL, as the tests do; works in a vhost and a database of its own and
 * removes both.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { subscription } from '@herald/client/grpc';
import { EVENTS_EXCHANGE, INGEST_EXCHANGE } from '@herald/core';
import { formatSoakSummary, type RouterHub, rssMiB, type SoakSample, startRouterHub, steadySpan, summarizeSoak } from '@herald/testing';
import { type ChannelModel, connect } from 'amqplib';
import { openStore } from '../packages/hub/src/store/index.ts';

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const count = Number(arg('--count') ?? (args.includes('--quick') ? 100_000 : 1_000_000));
const fixedRate = arg('--rate') === undefined ? undefined : Number(arg('--rate'));
const window = Number(arg('--window') ?? 4000);
const withGrpc = !args.includes('--no-grpc');
const out = arg('--out') ?? '/tmp';
if (
  !Number.isSafeInteger(count) ||
  count < 1 ||
  count > 0xffffffff ||
  !Number.isSafeInteger(window) ||
  window < 1 ||
  (fixedRate !== undefined && !(fixedRate > 0))
) {
  process.stderr.write('usage: npm run soak -- [--count N] [--quick] [--rate R] [--window W] [--no-grpc] [--out PATH]\n');
  process.exit(2);
}

const PUBLISHERS = 2;
const MAX_UNCONFIRMED = 2000;
const BODY_BYTES = 1024;
const SENDERS = ['soak1', 'soak2', 'soak3', 'soak4'];
const TYPES = ['load.tick', 'load.tock'];
const log = (line: string) => process.stderr.write(`soak: ${line}\n`);

// ---- events: the index is in the id, so the accounting needs a bitmap, not a set of strings -------

const runId = randomBytes(4).toString('hex');
const idOf = (i: number) => `${runId}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
/** The index of one of this run's ids; -1 for anything else. */
function indexOf(id: unknown): number {
  if (typeof id !== 'string' || id.length !== 36 || !id.startsWith(runId)) return -1;
  const i = Number.parseInt(id.slice(24), 16);
  return Number.isSafeInteger(i) && i >= 0 && i < count ? i : -1;
}
const PAD = 'x'.repeat(BODY_BYTES);
function body(i: number): Buffer {
  const head = `{"i":${i},"pad":"`;
  return Buffer.from(`${head}${PAD.slice(0, BODY_BYTES - head.length - 2)}"}`);
}

const confirmedAt = new Uint8Array(count);
const atReceiver = new Uint8Array(count);
const atGrpc = new Uint8Array(count);
let next = 0;
let sent = 0;
let confirmed = 0;
let nacked = 0;
let received = 0;
let receivedTwice = 0;
let grpcReceived = 0;
let startedAt = 0;
/** Set when the run gives up waiting: publishers stop where they are. */
let stopped = false;

/** Wakes publishers waiting for room in the window. */
let waiting: (() => void)[] = [];
const wake = () => {
  if (waiting.length === 0) return;
  const ws = waiting;
  waiting = [];
  for (const w of ws) w();
};
const progress = () => new Promise<void>((resolve) => waiting.push(resolve));

async function publisher(url: string, closers: (() => Promise<unknown>)[]): Promise<void> {
  const conn: ChannelModel = await connect(url, { noDelay: true });
  closers.push(() => conn.close());
  const ch = await conn.createConfirmChannel();
  let unconfirmed = 0;
  while (next < count && !stopped) {
    if (unconfirmed >= MAX_UNCONFIRMED) {
      await progress();
      continue;
    }
    if (fixedRate === undefined) {
      if (sent - received >= window) {
        await progress();
        continue;
      }
    } else {
      const due = ((sent + 1) / fixedRate) * 1000 - (Date.now() - startedAt);
      if (due > 0) {
        await sleep(Math.max(1, due));
        continue;
      }
    }
    const i = next++;
    sent++;
    unconfirmed++;
    const sender = SENDERS[i % SENDERS.length] as string;
    const type = TYPES[Math.floor(i / SENDERS.length) % TYPES.length] as string;
    const ok = ch.publish(
      INGEST_EXCHANGE,
      `${sender}.${type}`,
      body(i),
      { messageId: idOf(i), appId: sender, type, contentType: 'application/json', persistent: true },
      (err) => {
        unconfirmed--;
        if (err) nacked++;
        else {
          confirmedAt[i] = 1;
          confirmed++;
        }
        wake();
      },
    );
    if (!ok) await once(ch, 'drain');
  }
  if (!stopped) await ch.waitForConfirms();
}

async function receiver(url: string, closers: (() => Promise<unknown>)[]): Promise<void> {
  const conn = await connect(url);
  closers.push(() => conn.close());
  const ch = await conn.createChannel();
  await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  const q = await ch.assertQueue('soak-receiver', { durable: true });
  await ch.bindQueue(q.queue, EVENTS_EXCHANGE, '#');
  await ch.consume(
    q.queue,
    (m) => {
      const i = indexOf(m?.properties.messageId);
      if (i < 0) return;
      if (atReceiver[i]) receivedTwice++;
      else {
        atReceiver[i] = 1;
        received++;
        wake();
      }
    },
    { noAck: true },
  );
}

async function grpcReader(grpc: string, signal: AbortSignal): Promise<void> {
  const it = subscription(`soak-${runId}`, '*:*', { url: grpc, start: 'earliest', maxInFlight: 2000, signal, onError: () => undefined });
  for await (const e of it) {
    const i = indexOf(e.id);
    if (i >= 0 && !atGrpc[i]) {
      atGrpc[i] = 1;
      grpcReceived++;
    }
    e.ack();
  }
}

// ---- sampling ---------------------------------------------------------------------------------

/** The values of `names` in a Prometheus text exposition (unlabelled series). */
function promValues(text: string, names: readonly string[]): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [name, value] = line.split(' ');
    if (name && names.includes(name)) found.set(name, Number(value));
  }
  return found;
}
const METRICS = [
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p99_seconds',
  'nodejs_eventloop_lag_max_seconds',
  'herald_log_head_offset',
];
/** CPU seconds (user + system) a process used so far, from /proc; undefined once it ended. */
function cpuSeconds(pid: number): number | undefined {
  try {
    // The fields after the command name, which is in parentheses and may hold spaces: utime, stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
const CLOCK_TICKS = 100;
let lastCpu = { at: 0, hub: 0 as number | undefined, soak: 0 };
const ms = (s: number | undefined) => (s === undefined || !Number.isFinite(s) ? undefined : s * 1000);

async function sample(hub: RouterHub): Promise<SoakSample> {
  // The counts as of t; the hub reads its head offset a moment later, so head ≥ received.
  const t = (Date.now() - startedAt) / 1000;
  const counts = { sent, confirmed, received, grpc: withGrpc ? grpcReceived : undefined };
  const pid = hub.hub.child.pid;
  const cpu = {
    at: performance.now(),
    hub: pid === undefined ? undefined : cpuSeconds(pid),
    soak: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
  };
  const dt = (cpu.at - lastCpu.at) / 1000;
  const pct = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || lastCpu.at === 0 ? undefined : Math.round(((a - b) / dt) * 1000) / 10;
  const hubCpuPct = pct(cpu.hub, lastCpu.hub);
  const soakCpuPct = pct(cpu.soak, lastCpu.soak);
  lastCpu = cpu;
  const [metrics, queues] = await Promise.all([
    fetch(`${hub.http}/metrics`, { signal: AbortSignal.timeout(5000) })
      .then((r) => r.text())
      .then((text) => promValues(text, METRICS))
      .catch(() => new Map<string, number>()),
    hub.vhost.queues().catch(() => undefined),
  ]);
  return {
    t,
    ...counts,
    head: metrics.get('herald_log_head_offset') ?? Number.NaN,
    rssMiB: pid === undefined ? undefined : rssMiB(pid),
    delayP50Ms: ms(metrics.get('nodejs_eventloop_lag_p50_seconds')),
    delayP99Ms: ms(metrics.get('nodejs_eventloop_lag_p99_seconds')),
    delayMaxMs: ms(metrics.get('nodejs_eventloop_lag_max_seconds')),
    ingestMessages: queues?.find((q) => q.name === 'herald.ingest')?.messages,
    hubCpuPct,
    soakCpuPct,
  };
}

// ---- the run ------------------------------------------------------------------------------------

/** Reads the whole log once: marks each of this run's ids, and counts ids stored twice and offsets out of place. */
async function accountLog(dbUrl: string): Promise<{ inLog: Uint8Array; rows: number; twice: number; gaps: number }> {
  const store = await openStore({ url: dbUrl });
  const inLog = new Uint8Array(count);
  let rows = 0;
  let twice = 0;
  let gaps = 0;
  try {
    let after = 0n;
    for (;;) {
      const page = await store.query({ selector: '*:*', after, limit: 5000 });
      for (const e of page) {
        rows++;
        if (e.offset !== BigInt(rows)) gaps++;
        const i = indexOf(e.id);
        if (i < 0) continue;
        if (inLog[i]) twice++;
        inLog[i] = 1;
      }
      if (page.length < 5000) break;
      after = (page[page.length - 1] as { offset: bigint }).offset;
    }
  } finally {
    await store.close();
  }
  return { inLog, rows, twice, gaps };
}

/** Runs the soak; resolves true when something confirmed was lost, stored twice or out of place. */
async function main(): Promise<boolean> {
  const loadBefore = loadavg();
  const hub = await startRouterHub('soak', { HERALD_LOG_LEVEL: 'info' });
  const closers: (() => Promise<unknown>)[] = [];
  const abort = new AbortController();
  const samples: SoakSample[] = [];
  try {
    log(
      `run ${runId}: ${count.toLocaleString('en-US')} events of ${BODY_BYTES} B, ${fixedRate === undefined ? `flat out, window ${window}` : `${fixedRate}/s`}, gRPC subscription ${withGrpc ? 'on' : 'off'}; vhost ${hub.vhost.name}`,
    );
    await receiver(hub.vhost.url, closers);
    const grpc = withGrpc ? grpcReader(hub.grpc, abort.signal).catch((err) => log(`gRPC subscription ended: ${String(err)}`)) : undefined;
    startedAt = Date.now();
    const publishing = Promise.all(Array.from({ length: PUBLISHERS }, () => publisher(hub.vhost.url, closers)));
    let published = false;
    void publishing.finally(() => (published = true));
    // One sample a second; the run ends when everything confirmed has arrived (or nothing moved for 60 s).
    let lastMove = Date.now();
    let lastSeen = -1;
    for (let tick = 1; ; tick++) {
      await sleep(Math.max(0, startedAt + tick * 1000 - Date.now()));
      const s = await sample(hub);
      samples.push(s);
      if (tick % 10 === 0)
        log(
          `${s.t.toFixed(0)} s: sent ${s.sent}, confirmed ${s.confirmed}, log ${s.head}, receiver ${s.received}${withGrpc ? `, gRPC ${s.grpc}` : ''}; RSS ${s.rssMiB} MiB, delay p99 ${s.delayP99Ms?.toFixed(1)} ms, herald.ingest ${s.ingestMessages}`,
        );
      const seen = received + grpcReceived;
      if (seen !== lastSeen) lastMove = Date.now();
      lastSeen = seen;
      const done = published && received >= confirmed && (!withGrpc || grpcReceived >= confirmed) && s.head >= confirmed;
      if (done) break;
      if (Date.now() - lastMove > 60_000) {
        log('nothing arrived for 60 s: accounting for what did');
        stopped = true;
        wake();
        break;
      }
    }
    await publishing;
    abort.abort();
    await grpc;
    log(`accounting: reading the log (${confirmed} confirmed)`);
    const book = await accountLog(hub.db.url);
    let missingInLog = 0;
    let missingAtReceiver = 0;
    let missingAtGrpc = 0;
    for (let i = 0; i < count; i++) {
      if (!confirmedAt[i]) continue;
      if (!book.inLog[i]) missingInLog++;
      if (!atReceiver[i]) missingAtReceiver++;
      if (!atGrpc[i]) missingAtGrpc++;
    }
    const summary = summarizeSoak(samples, count, {
      confirmed,
      missingInLog,
      missingAtReceiver,
      missingAtGrpc: withGrpc ? missingAtGrpc : undefined,
    });
    process.stdout.write(`${formatSoakSummary(summary)}\n`);
    process.stdout.write(
      `            ${nacked} nacked; log ${book.rows} rows, ${book.twice} ids twice, ${book.gaps} offsets out of place; receiver ${receivedTwice} repeats\n`,
    );
    const warnings = hub.hub
      .output()
      .split('\n')
      .filter((l) => /"level":(40|50|60)/.test(l));
    process.stdout.write(
      `hub log     ${warnings.length} warnings and errors${warnings.length > 0 ? `, first: ${warnings[0]?.slice(0, 300)}` : ''}\n`,
    );
    const span = steadySpan(samples, count);
    const steady = span === undefined ? [] : samples.slice(span.from + 1, span.to + 1);
    const meanOf = (xs: (number | undefined)[]) => {
      const ys = xs.filter((x): x is number => x !== undefined);
      return ys.length === 0 ? '–' : (ys.reduce((a, b) => a + b, 0) / ys.length).toFixed(0);
    };
    process.stdout.write(
      `cpu         hub ${meanOf(steady.map((x) => x.hubCpuPct))}% of a core, soak (publishers, receiver, gRPC client) ${meanOf(steady.map((x) => x.soakCpuPct))}% (means over the steady part)\n`,
    );
    const report = {
      run: {
        id: runId,
        count,
        bodyBytes: BODY_BYTES,
        publishers: PUBLISHERS,
        mode: fixedRate === undefined ? { flatOut: { window } } : { rate: fixedRate },
        grpcSubscription: withGrpc,
        startedAt: new Date(startedAt).toISOString(),
        machine: { cpus: cpus().length, model: cpus()[0]?.model, totalMemMiB: Math.round(totalmem() / 2 ** 20), loadBefore },
      },
      summary,
      accounting: {
        confirmed,
        nacked,
        logRows: book.rows,
        idsTwice: book.twice,
        offsetsOutOfPlace: book.gaps,
        receiverRepeats: receivedTwice,
      },
      hubWarnings: warnings.slice(0, 20),
      samples,
    };
    const path = out.endsWith('.json') ? out : join(out, `herald-soak-${new Date(startedAt).toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(path, `${JSON.stringify(report, null, 1)}\n`);
    log(`samples written to ${path}`);
    return summary.lost.log + summary.lost.receiver + (summary.lost.grpc ?? 0) + book.twice + book.gaps > 0;
  } finally {
    abort.abort();
    for (const c of closers) await c().catch(() => undefined);
    await hub.close();
  }
}

let failed = true;
try {
  failed = await main();
} catch (err) {
  log(`run failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
}
process.exit(failed ? 1 : 0);
