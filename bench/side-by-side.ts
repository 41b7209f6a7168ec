/**
 * The side-by-side part of `npm run bench`: raw amqplib, Herald through a hub in archive mode and
 * in router mode (PostgreSQL), a null router (plain amqplib forwarding herald.ingest to
 * herald.events, nothing stored), the same null router committing each batch to PostgreSQL through
 * Herald's store before forwarding it (what keeping the log costs, apart from the rest of the
 * hub), a durable gRPC subscription on the router hub, the SDK's hub
 * publisher over the router hub's gRPC PublishStream to a receiver queue of everything on
 * herald.events (bench/client/direct-run.ts: the hub stores each event itself, so it crosses
 * RabbitMQ once; a hub whose ingest cannot append directly passes it through herald.ingest, twice),
 * and NATS JetStream, each once per round flat out and once at 1,000 events/s, in alternating
 * rounds (the order turned by one each round), so every path meets the same moments of a noisy
 * machine and each ratio divides by raw amqplib of the same round.
 *
 * Each path has a vhost of its own (and each hub a database of its own), so no binding of one path
 * delivers to another; all are removed at the end, and so are the run's queues and stream.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import {
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  sampleRss,
  spawnHerald,
  startHubProcess,
} from '@herald/testing';
import * as nats from 'nats';
import { type BaselineFigures, runBaseline } from '../packages/cli/src/bench/baseline.ts';
import { runGrpcSubscription } from '../packages/cli/src/bench/grpc-run.ts';
import { runHerald } from '../packages/cli/src/bench/herald-run.ts';
import { runJetStream } from '../packages/cli/src/bench/jetstream.ts';
import { type BenchOptions, normalizeBenchOptions } from '../packages/cli/src/bench/options.ts';
import { createPlan } from '../packages/cli/src/bench/plan.ts';
import { type SummaryMeta, type SummaryRow, spread } from '../packages/cli/src/bench/summary.ts';
import { runDirectPublish } from './client/direct-run.ts';
import { nullRouter, nullRouterWithLog } from './hub/null-router.ts';

export interface SideBySideOptions {
  rounds: number;
  /** Events per flat-out run. */
  flatCount: number;
  /** Seconds per run at 1,000 events/s. */
  pacedSeconds: number;
  /** NATS with JetStream, `host:port`. */
  natsUrl: string;
  log(line: string): void;
}

/** One run of one path: what the summary needs of it. */
interface RunFigures {
  perSec: number;
  p50: number;
  p99: number;
  lost: number;
}

/** A path: how to run it at a load, and the hub whose memory it uses, if any. */
interface Path {
  name: string;
  /** The AMQP URL of the path's vhost (none for JetStream). */
  url?: string;
  hub?: HeraldProcess | undefined;
  run(opts: BenchOptions, runId: string): Promise<RunFigures>;
}

/** Per round and path, flat out and paced, as measured (also printed in the JSON document). */
export interface RoundRecord {
  round: number;
  path: string;
  flat?: RunFigures | undefined;
  paced?: RunFigures | undefined;
  /** perSec ÷ raw amqplib's flat perSec in this round. */
  ratio?: number | undefined;
  hubPeakRssMiB?: number | undefined;
  error?: string | undefined;
}

export interface SideBySideResult {
  rows: SummaryRow[];
  rounds: RoundRecord[];
  /** Failures, one line each (shown under the table). */
  errors: string[];
}

const RAW = 'raw amqplib (one durable queue)';

const fromRaw = (f: BaselineFigures): RunFigures => ({
  perSec: f.endToEndThroughput,
  p50: f.latencyMs.p50,
  p99: f.latencyMs.p99,
  lost: f.lost,
});

function runId(): string {
  return `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** The options of one run: `herald bench --receivers all`'s defaults with the vhost's URL. */
function options(url: string, load: { count: number } | { seconds: number }): BenchOptions {
  const raw = 'count' in load ? { count: String(load.count) } : { rate: '1000', duration: `${load.seconds}s` };
  return normalizeBenchOptions({ ...raw, receivers: 'all', quiet: true }, { HERALD_AMQP_URL: url });
}

async function topology(url: string, mode: 'archive' | 'router'): Promise<void> {
  const p = spawnHerald(['topology', '--mode', mode], { HERALD_AMQP_URL: url });
  const code = await p.exited;
  if (code !== 0) throw new Error(`herald topology --mode ${mode} failed (exit ${code}): ${p.output()}`);
}

/** Runs every path `rounds` times, flat out and paced; cleans up what it made, whatever happens. */
export async function sideBySide(o: SideBySideOptions): Promise<SideBySideResult> {
  const cleanup: (() => Promise<unknown>)[] = [];
  const quiet = () => {};
  try {
    const own = async (prefix: string) => {
      const vhost = await createTestVhost(prefix);
      cleanup.push(() => vhost.delete());
      return vhost;
    };
    const ownDb = async (prefix: string) => {
      const db = await createTestDatabase(prefix);
      cleanup.push(() => db.drop());
      return db;
    };
    const hub = async (mode: 'archive' | 'router', url: string, dbUrl: string, grpcPort?: number) => {
      o.log(`starting a hub in ${mode} mode`);
      const env: Record<string, string> = { HERALD_AMQP_URL: url, HERALD_DATABASE_URL: dbUrl, HERALD_HTTP_PORT: '0' };
      if (grpcPort !== undefined) env.HERALD_GRPC_PORT = String(grpcPort);
      const h = await startHubProcess(env, ['--mode', mode]);
      cleanup.push(() => h.kill('SIGTERM'));
      return h;
    };
    const archiveVhost = await own('bench-archive');
    await topology(archiveVhost.url, 'archive');
    const archiveHub = await hub('archive', archiveVhost.url, (await ownDb('bench-archive')).url);
    const routerVhost = await own('bench-router');
    const grpcPort = await freePort();
    const routerHub = await hub('router', routerVhost.url, (await ownDb('bench-router')).url, grpcPort);
    const nullVhost = await own('bench-null');
    const stopNull = await nullRouter(nullVhost.url);
    cleanup.push(stopNull);
    // The same, committing each batch to a log first through Herald's own store.
    const nullLogVhost = await own('bench-null-log');
    cleanup.push(await nullRouterWithLog(nullLogVhost.url, (await ownDb('bench-null-log')).url));
    const plan = (opts: BenchOptions) => createPlan(opts.senders, opts.types, opts.seed);
    const herald = async (opts: BenchOptions, id: string): Promise<RunFigures> => {
      const h = await runHerald(opts, plan(opts), id, quiet, '(bench vhost)');
      const all = h.receivers.find((r) => r.kind === 'all');
      if (!all) throw new Error('no `all` receiver in the run');
      return { perSec: all.throughput, p50: all.latencyMs.p50, p99: all.latencyMs.p99, lost: all.lost + h.failed };
    };
    const paths: Path[] = [
      { name: RAW, url: archiveVhost.url, run: async (opts, id) => fromRaw(await runBaseline(opts, plan(opts), id, quiet)) },
      { name: 'Herald, hub in archive mode (PostgreSQL)', url: archiveVhost.url, hub: archiveHub, run: herald },
      { name: 'Herald, hub in router mode (PostgreSQL)', url: routerVhost.url, hub: routerHub, run: herald },
      { name: 'null router (amqplib, forwards only)', url: nullVhost.url, run: herald },
      { name: 'null router committing each batch to PostgreSQL first (Herald’s store)', url: nullLogVhost.url, run: herald },
      {
        name: 'Herald, durable gRPC subscription (router hub)',
        url: routerVhost.url,
        hub: routerHub,
        run: async (opts, id) => fromRaw(await runGrpcSubscription(opts, plan(opts), id, `127.0.0.1:${grpcPort}`, quiet)),
      },
      {
        name: 'Herald, gRPC publish stream → router hub → receiver on herald.events',
        url: routerVhost.url,
        hub: routerHub,
        run: async (opts, id) => fromRaw(await runDirectPublish(opts, plan(opts), id, `127.0.0.1:${grpcPort}`, quiet)),
      },
      {
        name: 'NATS JetStream (file storage, 1 replica)',
        run: async (opts, id) => fromRaw(await runJetStream(opts, plan(opts), id, { servers: o.natsUrl, nats }, quiet)),
      },
    ];

    const records: RoundRecord[] = [];
    const errors: string[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      const turn = (round - 1) % paths.length;
      const order = [...paths.slice(turn), ...paths.slice(0, turn)];
      const inRound: RoundRecord[] = [];
      for (const path of order) {
        const rec: RoundRecord = { round, path: path.name };
        const rss = path.hub ? sampleRss(path.hub.child.pid as number) : undefined;
        const load = (l: { count: number } | { seconds: number }) => options(path.url ?? '', l);
        try {
          o.log(`round ${round}: ${path.name}, flat out`);
          rec.flat = await path.run(load({ count: o.flatCount }), runId());
          o.log(`round ${round}: ${path.name}, flat out: ${Math.round(rec.flat.perSec)} events/s; at 1,000/s`);
          rec.paced = await path.run(load({ seconds: o.pacedSeconds }), runId());
        } catch (err) {
          rec.error = err instanceof Error ? err.message : String(err);
          errors.push(`round ${round}, ${path.name}: ${rec.error}`);
          o.log(`round ${round}: ${path.name} FAILED: ${rec.error}`);
        }
        if (rss) rec.hubPeakRssMiB = rss.stop();
        inRound.push(rec);
      }
      const raw = inRound.find((r) => r.path === RAW)?.flat?.perSec;
      for (const rec of inRound) if (raw && rec.flat) rec.ratio = rec.flat.perSec / raw;
      // Kept in path order, whatever the order of the round.
      for (const p of paths) records.push(inRound.find((r) => r.path === p.name)!);
    }
    const rows = paths.map((p): SummaryRow => {
      const mine = records.filter((r) => r.path === p.name);
      const rss = mine.map((r) => r.hubPeakRssMiB ?? 0);
      return {
        path: p.name,
        perSec: spread(mine.map((r) => r.flat?.perSec ?? Number.NaN)),
        ratio: spread(mine.map((r) => r.ratio ?? Number.NaN)),
        p50: spread(mine.map((r) => r.paced?.p50 ?? Number.NaN)),
        p99: spread(mine.map((r) => r.paced?.p99 ?? Number.NaN)),
        hubRssMiB: p.hub ? Math.max(...rss) : undefined,
        lost: mine.reduce((n, r) => n + (r.flat?.lost ?? 0) + (r.paced?.lost ?? 0), 0),
      };
    });
    return { rows, rounds: records, errors };
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  }
}

/** Cores, Node.js, RabbitMQ, NATS and PostgreSQL versions, for the page; `unknown` for what does not answer. */
export async function machine(natsUrl: string, managementUrl: string, dbUrl: string): Promise<SummaryMeta['machine']> {
  const out: SummaryMeta['machine'] = { cores: availableParallelism(), node: process.version, rabbitmq: 'unknown', nats: 'unknown' };
  try {
    const url = new URL('api/overview', managementUrl.endsWith('/') ? managementUrl : `${managementUrl}/`);
    const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
    url.username = '';
    url.password = '';
    const body = (await (await fetch(url, { headers: { authorization: `Basic ${auth}` } })).json()) as { rabbitmq_version?: string };
    out.rabbitmq = body.rabbitmq_version ?? 'unknown';
  } catch {
    // Shown as unknown.
  }
  try {
    const nc = await nats.connect({ servers: natsUrl, timeout: 3000 });
    out.nats = `${nc.info?.version ?? 'unknown'}${nc.info?.jetstream ? '' : ' (JetStream not enabled)'}`;
    await nc.close();
  } catch (err) {
    out.nats = `not reachable on ${natsUrl} (${err instanceof Error ? err.message : String(err)})`;
  }
  try {
    const pg = await import('pg');
    const client = new pg.default.Client({ connectionString: dbUrl });
    await client.connect();
    out.PostgreSQL = String((await client.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version);
    await client.end();
  } catch {
    // Left out.
  }
  return out;
}
