/**
 * The router against the null router (bench/hub/null-router.ts), side by side in alternating rounds
 * (the order turned by one each round), each path in a vhost (and database) of its own, the same
 * plan flat out (`herald bench --receivers all`'s defaults, 1 KiB events), end-to-end events/s:
 *   - null router: two trips through RabbitMQ, nothing stored, prefetch 2,000;
 *   - null router + log: the same, committing each batch to PostgreSQL through Herald's store first;
 *   - router hub, defaults: its prefetch is min(2,000, HERALD_INGEST_MAX_BYTES ÷ HERALD_MAX_EVENT_BYTES)
 *     = 256 (256 MiB ÷ 1 MiB), so at most 256 events wait between RabbitMQ and their acknowledgement;
 *   - router hub, prefetch 2,000: the same hub with HERALD_MAX_EVENT_BYTES=128 KiB (2,000 × 128 KiB
 *     fits the 256 MiB), everything else as the defaults.
 * Ratios divide by the null router of the same round. Prints one JSON document; asserts nothing.
 *
 *   node --conditions=herald-source --import tsx bench/hub/router-ratio-bench.ts [--rounds 3] [--count 40000]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createTestDatabase, createTestVhost, type HeraldProcess, startHubProcess } from '@herald/testing';
import { runHerald } from '../../packages/cli/src/bench/herald-run.ts';
import { normalizeBenchOptions } from '../../packages/cli/src/bench/options.ts';
import { createPlan } from '../../packages/cli/src/bench/plan.ts';
import { alternatingRounds, spread } from '../alternating-rounds.ts';
import { nullRouter, nullRouterWithLog } from './null-router.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, count: { type: 'string', default: '40000' } } });
const rounds = Number(values.rounds);
const count = Number(values.count);
const log = (line: string) => process.stderr.write(`router-ratio-bench: ${line}\n`);

const cleanup: (() => Promise<unknown>)[] = [];
try {
  const vhost = async (name: string) => {
    const v = await createTestVhost(name);
    cleanup.push(() => v.delete());
    return v;
  };
  const database = async (name: string) => {
    const d = await createTestDatabase(name);
    cleanup.push(() => d.drop());
    return d;
  };
  const hub = async (url: string, extra: Record<string, string>): Promise<HeraldProcess> => {
    const h = await startHubProcess({
      HERALD_AMQP_URL: url,
      HERALD_DATABASE_URL: (await database('ratio_hub')).url,
      HERALD_HTTP_PORT: '0',
      ...extra,
    });
    cleanup.push(() => h.kill('SIGTERM'));
    return h;
  };
  const nullV = await vhost('ratio-null');
  cleanup.push(await nullRouter(nullV.url));
  const logV = await vhost('ratio-null-log');
  cleanup.push(await nullRouterWithLog(logV.url, (await database('ratio_null_log')).url));
  const defaultsV = await vhost('ratio-router');
  await hub(defaultsV.url, {});
  const wideV = await vhost('ratio-router-2000');
  await hub(wideV.url, { HERALD_MAX_EVENT_BYTES: String(128 * 1024) });

  const paths: Record<string, string> = {
    'null router': nullV.url,
    'null router + log': logV.url,
    'router hub, defaults (prefetch 256)': defaultsV.url,
    'router hub, prefetch 2000 (max event 128 KiB)': wideV.url,
  };
  const names = Object.keys(paths);
  const run = (name: string) => async () => {
    const opts = normalizeBenchOptions({ count: String(count), receivers: 'all', quiet: true }, { HERALD_AMQP_URL: paths[name] as string });
    const r = await runHerald(opts, createPlan(opts.senders, opts.types, opts.seed), randomBytes(4).toString('hex'), () => {}, name);
    return r.receivers.find((x) => x.kind === 'all')?.throughput ?? Number.NaN;
  };
  const perRound = await alternatingRounds(Object.fromEntries(names.map((n) => [n, run(n)])), rounds, log);
  const summary = {
    count,
    rounds,
    eventsPerSecond: Object.fromEntries(
      names.map((n) => [
        n,
        spread(
          perRound.map((r) => r[n] as number),
          0,
        ),
      ]),
    ),
    ofNullRouter: Object.fromEntries(
      names.slice(1).map((n) => [
        n,
        spread(
          perRound.map((r) => (r[n] as number) / (r['null router'] as number)),
          2,
        ),
      ]),
    ),
    perRound: perRound.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]))),
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
} finally {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
}
