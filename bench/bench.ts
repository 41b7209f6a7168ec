/**
 * `npm run bench`: every throughput and latency figure of docs/benchmarks.md, measured side by side
 * in one run on this machine, each Herald figure beside raw amqplib measured in the same `herald
 * bench` run (`--baseline`), so the ratios hold however noisy the machine is.
 *
 *   1. broker only (archive binding, no hub): five receivers, loss and order over --count events;
 *      one receiver vs one raw queue, flat out; one receiver at 1,000 events/s.
 *   2. the hub in archive mode on PostgreSQL: flat out and at 1,000 events/s, with hub RSS.
 *   3. the hub in router mode on PostgreSQL: the same, and the five receivers over --count events.
 *
 *   4. the router hub flat out with metrics on (scraped every 2 s) and off (HERALD_METRICS=off),
 *      interleaved, three times each.
 *
 * Options: --count N (five-receiver run, default 100000), --quick (smaller counts, for a smoke run),
 * --only metrics (step 4 alone).
 * Needs RabbitMQ with its management API and PostgreSQL, as the tests do; works in a vhost and a
 * database of its own and removes both.
 */
import {
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  runHeraldBench,
  sampleRss,
  spawnHerald,
  startHubProcess,
} from '@herald/testing';
import type { BenchReport } from '../packages/cli/src/bench/index.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const countArg = args.indexOf('--count');
const fiveCount = countArg >= 0 ? Number(args[countArg + 1]) : quick ? 10_000 : 100_000;
const flatCount = quick ? 10_000 : 50_000;
const rateSeconds = quick ? 5 : 20;

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
const vhost = await createTestVhost('bench');
const db = await createTestDatabase('bench');
const env = { HERALD_AMQP_URL: vhost.url };
try {
  if (only === 'metrics') {
    const topo = await herald(['topology', '--mode', 'archive'], env);
    if (topo.code !== 0) throw new Error(`herald topology failed: ${topo.out}`);
    process.stdout.write(`${JSON.stringify({ metrics: await metricsOnOff(env) }, null, 2)}\n`);
  } else await all();
} finally {
  await vhost.delete().catch(() => {});
  await db.drop().catch(() => {});
}

/** Steps 1 to 4. */
async function all(): Promise<void> {
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
  const metrics = await metricsOnOff(env);
  const result = {
    machine: { cores: (await import('node:os')).availableParallelism(), node: process.version },
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
    metrics,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
