/**
 * The gRPC publish path against raw amqplib's one hop, side by side in one run. A router hub
 * process (a vhost and a database of its own) is started; then, in alternating rounds (the order
 * turned each round), each path publishes the same plan flat out (`herald bench`'s defaults: 3
 * senders, 1 KiB JSON events, 1,000 in flight per sender) and one receiver of everything counts
 * what arrives:
 *   - raw: amqplib with publisher confirms to one durable queue and a consumer of it (one hop);
 *   - sdk-amqp: the SDK's createPublisher to herald.ingest → hub → herald.events → a receiver;
 *   - direct: the SDK's createHubPublisher over the hub's gRPC PublishStream → hub (stores it) →
 *     herald.events → a receiver (bench/client/direct-run.ts);
 *   - log alone: Herald's store appending the same number of 1 KiB events to PostgreSQL in a
 *     database of its own, one append of 500 after another, nothing else: what the log's commit
 *     allows any path that stores each event before it is answered, on this machine.
 * Each round's figure is end-to-end events/s (first publish to last delivery); `ratio` is the
 * path's over raw's of the same round, and the summary gives medians [min–max] of the rounds.
 * `direct` says `stored through herald.ingest` when the answers carried no offsets (the hub's
 * ingest has no direct append yet, so the event crosses RabbitMQ twice).
 *
 *   node --conditions=herald-source --import tsx bench/client/direct-publish-bench.ts [--quick] [--rounds 3] [--events 20000]
 *
 * `--quick`: 1 round of 5,000 events. Needs RabbitMQ and PostgreSQL as the tests do; removes what
 * it made. Prints one JSON document; asserts nothing.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createHubPublisher } from '@herald/client';
import { createEvent } from '@herald/core';
import { createTestDatabase, createTestVhost, freePort, startHubProcess } from '@herald/testing';
import { runBaseline } from '../../packages/cli/src/bench/baseline.ts';
import { runHerald } from '../../packages/cli/src/bench/herald-run.ts';
import { type BenchOptions, normalizeBenchOptions } from '../../packages/cli/src/bench/options.ts';
import { createPlan } from '../../packages/cli/src/bench/plan.ts';
import { openStore } from '../../packages/hub/src/store/index.ts';
import { alternatingRounds, spread } from '../alternating-rounds.ts';
import { runDirectPublish } from './direct-run.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    events: { type: 'string' },
  },
});
const rounds = Number(values.rounds ?? (values.quick ? 1 : 3));
const count = Number(values.events ?? (values.quick ? 5000 : 20_000));
const log = (line: string) => process.stderr.write(`${line}\n`);
const quiet = () => {};

const vhost = await createTestVhost('bench-direct');
const db = await createTestDatabase('bench_direct');
const grpcPort = await freePort();
const hub = await startHubProcess({
  HERALD_AMQP_URL: vhost.url,
  HERALD_DATABASE_URL: db.url,
  HERALD_MODE: 'router',
  HERALD_HTTP_PORT: '0',
  HERALD_GRPC_PORT: String(grpcPort),
});
const grpcUrl = `127.0.0.1:${grpcPort}`;
const logDb = await createTestDatabase('bench_direct_log');
const logStore = await openStore({ url: logDb.url });
await logStore.migrate();
if (!(await logStore.acquireWriterLease())) throw new Error('no writer lease on the log-alone database');
/** The log alone: `count` events of 1 KiB appended 500 at a time, one after another; events/s. */
const appendAlone = async (): Promise<number> => {
  const data = Buffer.from(JSON.stringify({ pad: 'x'.repeat(1000) }));
  const started = performance.now();
  for (let done = 0; done < count; done += 500) {
    const n = Math.min(500, count - done);
    await logStore.append(Array.from({ length: n }, () => createEvent({ sender: 'bench', type: 'bench.append', data })));
  }
  return count / ((performance.now() - started) / 1000);
};
try {
  // Whether the hub stores directly: the answer of one publish carries an offset then.
  const probe = createHubPublisher({ sender: 'bench', url: grpcUrl });
  const direct = (await probe.publish('bench-probe', null)).offset !== undefined;
  await probe.close();

  const opts = (): BenchOptions =>
    normalizeBenchOptions({ count: String(count), receivers: 'all', quiet: true }, { HERALD_AMQP_URL: vhost.url });
  const plan = (o: BenchOptions) => createPlan(o.senders, o.types, o.seed);
  const id = () => `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const paths: Record<string, () => Promise<number>> = {
    raw: async () => (await runBaseline(opts(), plan(opts()), id(), quiet)).endToEndThroughput,
    'sdk-amqp': async () => {
      const h = await runHerald(opts(), plan(opts()), id(), quiet, '(bench vhost)');
      return h.receivers.find((r) => r.kind === 'all')?.throughput ?? Number.NaN;
    },
    direct: async () => (await runDirectPublish(opts(), plan(opts()), id(), grpcUrl, quiet)).endToEndThroughput,
    'log alone': appendAlone,
  };
  const names = Object.keys(paths);
  const perRound = await alternatingRounds(paths, rounds, log);
  const of = (name: string) => perRound.map((r) => r[name] as number);
  const ratio = (name: string) => perRound.map((r) => (r[name] as number) / (r.raw as number));
  const summary = {
    events: count,
    rounds,
    direct: direct ? 'stored by the hub (one hop through RabbitMQ)' : 'stored through herald.ingest (the ingest has no direct append)',
    eventsPerSecond: Object.fromEntries(names.map((n) => [n, spread(of(n))])),
    ratioToRaw: {
      'sdk-amqp': spread(ratio('sdk-amqp'), 2),
      direct: spread(ratio('direct'), 2),
      'log alone': spread(ratio('log alone'), 2),
    },
    ratioDirectToSdkAmqp: spread(
      perRound.map((r) => (r.direct as number) / (r['sdk-amqp'] as number)),
      2,
    ),
    perRound: perRound.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]))),
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
} finally {
  await hub.kill('SIGTERM');
  await logStore.close().catch(() => undefined);
  await logDb.drop().catch(() => undefined);
  await vhost.delete().catch(() => undefined);
  await db.drop().catch(() => undefined);
}
