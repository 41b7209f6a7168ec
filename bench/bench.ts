/**
 * `npm run bench`: every throughput and latency figure of docs/benchmarks.md, measured side by side
 * in one run on this machine, so the ratios hold however noisy the machine is.
 *
 *   0. side by side (bench/side-by-side.ts): raw amqplib, the hub in archive and in router mode,
 *      the null router, a durable gRPC subscription, the SDK's hub publisher over gRPC PublishStream
 *      (to a receiver on herald.events) and NATS JetStream, in alternating rounds, flat out and at
 *      1,000 events/s; writes the summary block of docs/benchmarks.md and
 *      docs/benchmarks.svg (a full run does by default; --quick only with --write-docs).
 *
 * Then every Herald figure beside raw amqplib measured in the same `herald bench` run (`--baseline`):
 *
 *   1. broker only (archive binding, no hub): five receivers, loss and order over --count events;
 *      one receiver vs one raw queue, flat out; one receiver at 1,000 events/s.
 *   2. the hub in archive mode on PostgreSQL: flat out and at 1,000 events/s, with hub RSS.
 *   3. the hub in router mode on PostgreSQL: the same, and the five receivers over --count events.
 *
 *   4. (only with --only metrics) the router hub flat out with metrics on (scraped every 2 s) and
 *      off (HERALD_METRICS=off), interleaved, three times each.
 *
 * A full run (steps 0 to 3) takes 8–10 minutes on the project's machine.
 *
 * Options: --count N (five-receiver run, default 100000), --quick (smaller counts, for a smoke run),
 * --rounds N (side by side, default 3; 1 with --quick), --write-docs / --no-write-docs,
 * --only summary (step 0 alone), --only details (steps 1 to 3), --only metrics (step 4 alone).
 * Needs RabbitMQ with its management API, PostgreSQL, and for step 0 NATS with JetStream
 * (HERALD_BENCH_NATS_URL, default 127.0.0.1:4222); works in vhosts, databases and a stream of its
 * own and removes them.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import {
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  managementUrl,
  repoRoot,
  runHeraldBench,
  sampleRss,
  spawnHerald,
  startHubProcess,
} from '@herald/testing';
import type { BenchReport } from '../packages/cli/src/bench/index.ts';
import { replaceSummary, summaryMarkdown, summarySvg } from '../packages/cli/src/bench/summary.ts';
import { machine, sideBySide } from './side-by-side.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const countArg = args.indexOf('--count');
const fiveCount = countArg >= 0 ? Number(args[countArg + 1]) : quick ? 10_000 : 100_000;
const flatCount = quick ? 10_000 : 50_000;
const rateSeconds = quick ? 5 : 20;
const roundsArg = args.indexOf('--rounds');
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 1 : 3;
const writeDocs = args.includes('--write-docs') || (!quick && !args.includes('--no-write-docs'));
const natsUrl = process.env.HERALD_BENCH_NATS_URL ?? '127.0.0.1:4222';
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20)
  throw new Error(`--rounds: expected an integer from 1 to 20, got ${args[roundsArg + 1]}`);

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

async function herald(argv: string[], env: Record<string, string>): Promise<{ code: number | string; out: string }> {
  const p = spawnHerald(argv, env);
  const code = await p.exited;
  return { code, out: p.output() };
}

async function bench(name: string, argv: string[], env: Record<string, string>): Promise<BenchReport> {
  log(`${name}: herald bench ${argv.join(' ')}`);
  const { report, code } = await runHeraldBench<BenchReport>(argv, env);
  if (!report.ok) log(`${name}: NOT OK (exit ${code})`);
  return report;
}

const round = (n: number | undefined, d = 0) => (n === undefined ? undefined : Math.round(n * 10 ** d) / 10 ** d);

function summary(run: BenchReport) {
  const all = run.receivers.find((r) => r.kind === 'all');
  return {
    sent: run.sent,
    ok: run.ok,
    lost: run.receivers.reduce((s, r) => s + r.lost, 0),
    reordered: run.receivers.reduce((s, r) => s + r.reordered, 0),
    duplicates: run.receivers.reduce((s, r) => s + r.duplicates, 0),
    publishPerSec: round(run.publish?.throughput),
    endToEndPerSec: round(all?.throughput),
    p50: round(all?.latencyMs.p50, 2),
    p99: round(all?.latencyMs.p99, 2),
    rawPublishPerSec: round(run.baseline?.publishThroughput),
    rawEndToEndPerSec: round(run.baseline?.endToEndThroughput),
    rawP50: round(run.baseline?.latencyMs.p50, 2),
    rawP99: round(run.baseline?.latencyMs.p99, 2),
    publishRatio: round(run.ratios?.publishThroughput, 2),
    endToEndRatio: round(run.ratios?.endToEndThroughput, 2),
  };
}

async function withHub(mode: 'archive' | 'router', env: Record<string, string>, dbUrl: string) {
  log(`starting the hub in ${mode} mode on PostgreSQL`);
  const hub: HeraldProcess = await startHubProcess({ ...env, HERALD_DATABASE_URL: dbUrl, HERALD_HTTP_PORT: '0' }, ['--mode', mode]);
  try {
    const rss = sampleRss(hub.child.pid as number);
    const flat = await bench(`${mode} flat out`, ['--receivers', 'all', '--count', String(flatCount), '--baseline'], env);
    const paced = await bench(
      `${mode} 1,000/s`,
      ['--receivers', 'all', '--rate', '1000', '--duration', String(rateSeconds), '--baseline'],
      env,
    );
    // Router mode is where offsets, pauses and replays live: check loss and order through all five
    // receiver kinds there too.
    const five = mode === 'router' ? summary(await bench(`${mode} five receivers`, ['--count', String(fiveCount)], env)) : undefined;
    return { flat: summary(flat), paced: summary(paced), five, hubPeakRssMiB: rss.stop() };
  } finally {
    await hub.kill('SIGTERM');
  }
}

/** Router flat out with metrics on and off, three of each in the order on, off, off, on, on, off (no side goes first or last more often), each in a hub and a database of its own. */
async function metricsOnOff(env: Record<string, string>) {
  const runs: { metrics: boolean; endToEndPerSec: number | undefined; endToEndRatio: number | undefined }[] = [];
  for (const metrics of [true, false, false, true, true, false]) {
    const port = await freePort();
    // A database of its own each time, so no run starts with a longer log than another.
    const own = await createTestDatabase(`bench-metrics-${runs.length}`);
    const hub = await startHubProcess(
      { ...env, HERALD_DATABASE_URL: own.url, HERALD_HTTP_PORT: String(port), HERALD_METRICS: metrics ? 'on' : 'off' },
      ['--mode', 'router'],
    );
    // What a Prometheus scraping often would cost, and more.
    const scraper = metrics
      ? setInterval(
          () =>
            void fetch(`http://127.0.0.1:${port}/metrics`)
              .then((r) => r.text())
              .catch(() => undefined),
          2000,
        )
      : undefined;
    try {
      const r = summary(
        await bench(`router, metrics ${metrics ? 'on' : 'off'}`, ['--receivers', 'all', '--count', String(flatCount), '--baseline'], env),
      );
      // The ratio to raw amqplib of the same run, unrounded: what is compared.
      const ratio = r.endToEndPerSec !== undefined && r.rawEndToEndPerSec ? r.endToEndPerSec / r.rawEndToEndPerSec : undefined;
      runs.push({ metrics, endToEndPerSec: r.endToEndPerSec, endToEndRatio: round(ratio, 3) });
    } finally {
      if (scraper) clearInterval(scraper);
      await hub.kill('SIGTERM');
      await own.drop().catch(() => undefined);
    }
  }
  const mean = (on: boolean) => {
    const xs = runs.filter((r) => r.metrics === on).map((r) => r.endToEndRatio ?? 0);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  return { runs, onToOff: round(mean(true) / mean(false), 3) };
}

const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
if (only !== undefined && !['summary', 'details', 'metrics'].includes(only))
  throw new Error(`--only: expected summary, details or metrics, got ${only}`);
const vhost = await createTestVhost('bench');
const db = await createTestDatabase('bench');
const env = { HERALD_AMQP_URL: vhost.url };
try {
  if (only === 'metrics') {
    const topo = await herald(['topology', '--mode', 'archive'], env);
    if (topo.code !== 0) throw new Error(`herald topology failed: ${topo.out}`);
    process.stdout.write(`${JSON.stringify({ metrics: await metricsOnOff(env) }, null, 2)}\n`);
  } else {
    const side = only === 'details' ? undefined : await summary0();
    const details = only === 'summary' ? undefined : await all();
    process.stdout.write(`${JSON.stringify({ sideBySide: side, ...details }, null, 2)}\n`);
  }
} finally {
  await vhost.delete().catch(() => {});
  await db.drop().catch(() => {});
}

/** Step 0: the side-by-side rounds, and (when asked) the page's summary block and chart. */
async function summary0() {
  const started = new Date();
  const loadAtStart = loadavg()[0] ?? 0;
  const flat = quick ? 3_000 : 30_000;
  const pacedSeconds = quick ? 3 : 10;
  const result = await sideBySide({ rounds, flatCount: flat, pacedSeconds, natsUrl, log });
  const seconds = Math.round((Date.now() - started.getTime()) / 1000);
  const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  const notes = [
    ...(loadAtStart >= 2
      ? [
          `The machine was busy when the run started (1-minute load average ${loadAtStart.toFixed(2)} on ${availableParallelism()} cores): every path met the same noise, the ratios hold, the rates and tails are lower and wider than on a quiet machine.`,
        ]
      : []),
    ...result.errors.map((e) => `Failed: ${e}.`),
  ];
  if (writeDocs) {
    const svg = summarySvg(result.rows);
    const block = summaryMarkdown(
      result.rows,
      {
        command,
        date: started,
        machine: await machine(natsUrl, managementUrl, db.url),
        rounds,
        flatCount: flat,
        pacedSeconds,
        seconds,
        load: [loadAtStart, loadavg()[0] ?? 0],
        commit: commit(),
        note: notes.join(' ') || undefined,
      },
      'benchmarks.svg',
    );
    const page = join(repoRoot, 'docs', 'benchmarks.md');
    writeFileSync(join(repoRoot, 'docs', 'benchmarks.svg'), svg);
    writeFileSync(page, replaceSummary(readFileSync(page, 'utf8'), block));
    log('wrote the summary of docs/benchmarks.md and docs/benchmarks.svg');
  }
  return { seconds, rounds, flatCount: flat, pacedSeconds, rows: result.rows, runs: result.rounds, errors: result.errors };
}

/** The commit measured, `+` when the tree has changes not committed; undefined outside a git checkout. */
function commit(): string | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['--no-optional-locks', 'status', '--porcelain', '--untracked-files=no'], {
      cwd: repoRoot,
      encoding: 'utf8',
    }).trim();
    return dirty ? `${head}+` : head;
  } catch {
    return undefined;
  }
}

/** Steps 1 to 3. */
async function all() {
  const started = Date.now();
  const topo = await herald(['topology', '--mode', 'archive'], env);
  if (topo.code !== 0) throw new Error(`herald topology failed: ${topo.out}`);
  const five = await bench('five receivers', ['--count', String(fiveCount), '--baseline'], env);
  const flat = await bench('broker only, flat out', ['--receivers', 'all', '--count', String(flatCount), '--baseline'], env);
  const paced = await bench(
    'broker only, 1,000/s',
    ['--receivers', 'all', '--rate', '1000', '--duration', String(rateSeconds), '--baseline'],
    env,
  );
  const archive = await withHub('archive', env, db.url);
  const router = await withHub('router', env, db.url);
  const result = {
    machine: { cores: availableParallelism(), node: process.version },
    seconds: Math.round((Date.now() - started) / 1000),
    fiveReceivers: {
      ...summary(five),
      receivers: five.receivers.map((r) => ({
        kind: r.kind,
        expected: r.expected,
        received: r.received,
        lost: r.lost,
        reordered: r.reordered,
      })),
    },
    brokerOnly: { flat: summary(flat), paced: summary(paced) },
    archive,
    router,
  };
  return result;
}
