/**
 * The router's latency at a steady rate, several times over on one hub, the way `npm run bench`
 * meets it (a flat-out run first, then paced runs on the same hub and log): starts a router hub on
 * PostgreSQL (`startRouterHub`), runs `herald bench --receivers all --count 50000 --baseline` once, then `--runs`
 * times `herald bench --receivers all --rate <rate> --duration <seconds> --baseline`, and prints
 * each run's p50 / p99 beside raw amqplib's from the same run. One run's p99 rests on a few hundred
 * events, so the spread over runs says more than any one figure.
 *
 *   node --import tsx bench/hub/router-latency-bench.ts [--runs 3] [--rate 1000] [--seconds 15] [--no-flat]
 *
 * Works in a vhost and a database of its own; prints JSON; asserts nothing.
 */
import { parseArgs } from 'node:util';
import { runHeraldBench, startRouterHub } from '@herald/testing';
import type { BenchReport } from '../../packages/cli/src/bench/index.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '15' },
    'no-flat': { type: 'boolean', default: false },
  },
});

function log(line: string): void {
  process.stderr.write(`router-latency-bench: ${line}\n`);
}

async function bench(argv: string[], env: Record<string, string>) {
  const { report: r } = await runHeraldBench<BenchReport>(['--receivers', 'all', '--baseline', ...argv], env);
  const all = r.receivers.find((x) => x.kind === 'all');
  const ms = (n: number | undefined) => (n === undefined ? undefined : Math.round(n * 100) / 100);
  return {
    ok: r.ok,
    perSec: Math.round(all?.throughput ?? 0),
    p50: ms(all?.latencyMs.p50),
    p99: ms(all?.latencyMs.p99),
    rawPerSec: Math.round(r.baseline?.endToEndThroughput ?? 0),
    rawP50: ms(r.baseline?.latencyMs.p50),
    rawP99: ms(r.baseline?.latencyMs.p99),
  };
}

const fx = await startRouterHub('routerlat');
const env = { HERALD_AMQP_URL: fx.vhost.url };
try {
  let flat: Awaited<ReturnType<typeof bench>> | undefined;
  if (!args['no-flat']) {
    log('flat out, 50,000 events');
    flat = await bench(['--count', '50000'], env);
  }
  const paced = [];
  for (let i = 1; i <= Number(args.runs); i++) {
    log(`paced run ${i}: ${args.rate}/s for ${args.seconds} s`);
    paced.push(await bench(['--rate', String(args.rate), '--duration', String(args.seconds)], env));
  }
  process.stdout.write(`${JSON.stringify({ rate: Number(args.rate), seconds: Number(args.seconds), flat, paced }, null, 2)}\n`);
} finally {
  await fx.close();
}
