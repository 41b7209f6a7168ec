/**
 * What RabbitMQ allows a router on this machine, and how much of it Herald takes.
 *
 * First, one trip through RabbitMQ in plain amqplib, flat out, three ways in the same run: to a
 * queue through the default exchange (what `herald bench --baseline` measures), through the topic
 * exchange `herald.ingest` with the properties and `x-herald-time` header every Herald event
 * carries, and the same with `x-herald-offset` added (a forward). Every router makes RabbitMQ do
 * both of the last two for each event, so 1 / (1/a + 1/b) of the first, with a and b their shares
 * of it, bounds any router (`twoTripBound`).
 *
 * Then two trips through RabbitMQ without Herald: a "null router" in plain
 * amqplib takes every message of queue `herald.ingest` and publishes it to `herald.events` (same
 * topology, persistent, publisher confirms, acks with `multiple` once the forwards are confirmed,
 * pipelined like the hub — but no store, no parsing), and `herald bench --receivers all --baseline`
 * measures it end to end beside raw amqplib (one queue) in the same run. Then the same bench through
 * the real router hub on PostgreSQL. The ratio of the two says how much of RabbitMQ's two-hop
 * ceiling the hub reaches.
 *
 *   node --import tsx bench/hub/null-router-bench.ts [count=50000]
 *
 * (The one-trip figures use count messages of 1 KiB, three publishers with 1,000 confirms in
 * flight each, one consumer with prefetch 500 acking with `multiple`, like the baseline.)
 *
 * Prints one JSON document; asserts nothing.
 */
import { INGEST_EXCHANGE } from '@herald/core';
import { createTestDatabase, createTestVhost, runHeraldBench, startHubProcess } from '@herald/testing';
import { connect, type Message } from 'amqplib';
import type { BenchReport } from '../../packages/cli/src/bench/index.ts';
import { declareShared } from '../../packages/hub/src/ingest/topology.ts';
import { nullRouter } from './null-router.ts';

const count = Number(process.argv[2] ?? 50_000);

function log(line: string): void {
  process.stderr.write(`null-router-bench: ${line}\n`);
}

type Trip = 'default-exchange' | 'topic-with-herald-headers' | 'topic-with-forward-headers';

/** One trip through RabbitMQ, flat out: messages per second from the first publish to the last delivery. */
async function oneTrip(url: string, trip: Trip): Promise<number> {
  const conn = await connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  let exchange = '';
  if (trip !== 'default-exchange') {
    await declareShared(ch);
    await ch.bindQueue(queue, INGEST_EXCHANGE, '#');
    exchange = INGEST_EXCHANGE;
  }
  await ch.prefetch(500);
  let received = 0;
  let last: Message | undefined;
  let acking = false;
  let done!: () => void;
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  await ch.consume(queue, (m) => {
    if (!m) return;
    last = m;
    if (++received === count) done();
    if (!acking) {
      acking = true;
      setImmediate(() => {
        acking = false;
        if (last) ch.ack(last, true);
      });
    }
  });
  const publishers = await Promise.all(
    [0, 1, 2].map(async () => {
      const c = await connect(url, { noDelay: true });
      return { c, ch: await c.createConfirmChannel() };
    }),
  );
  const body = Buffer.alloc(1024, 0x61);
  const started = performance.now();
  let sent = 0;
  let inFlight = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (inFlight < 3000 && sent < count) {
        const i = sent++;
        inFlight++;
        const sender = `s${i % 3}`;
        const type = `t${i % 4}`;
        const headers: Record<string, unknown> = trip === 'default-exchange' ? {} : { 'x-herald-time': Date.now() };
        if (trip === 'topic-with-forward-headers') headers['x-herald-offset'] = String(i + 1);
        const routingKey = exchange === '' ? queue : `${sender}.${type}`;
        const properties = { persistent: true, contentType: 'application/json', appId: sender, type, messageId: `m-${i}`, headers };
        (publishers[i % 3] as (typeof publishers)[number]).ch.publish(exchange, routingKey, body, properties, () => {
          inFlight--;
          if (sent < count) pump();
          else if (inFlight === 0) resolve();
        });
      }
    };
    pump();
  });
  await all;
  const perSec = Math.round(count / ((performance.now() - started) / 1000));
  for (const p of publishers) await p.c.close().catch(() => undefined);
  await conn.close().catch(() => undefined);
  return perSec;
}

async function bench(env: Record<string, string>): Promise<BenchReport> {
  return (await runHeraldBench<BenchReport>(['--receivers', 'all', '--count', String(count), '--baseline'], env)).report;
}

function summary(r: BenchReport) {
  const all = r.receivers.find((x) => x.kind === 'all');
  return {
    endToEndPerSec: Math.round(all?.throughput ?? 0),
    rawEndToEndPerSec: Math.round(r.baseline?.endToEndThroughput ?? 0),
    ratio: Math.round((r.ratios?.endToEndThroughput ?? 0) * 1000) / 1000,
    lost: all?.lost,
    reordered: all?.reordered,
  };
}

const vhost = await createTestVhost('nullrouter');
const db = await createTestDatabase('nullrouter');
const env = { HERALD_AMQP_URL: vhost.url };
try {
  const trips: Record<string, number> = {};
  for (const trip of ['default-exchange', 'topic-with-herald-headers', 'topic-with-forward-headers'] as const) {
    log(`one trip through RabbitMQ: ${trip}`);
    trips[trip] = await oneTrip(vhost.url, trip);
  }
  const raw = trips['default-exchange'] as number;
  const oneTripRatios = Object.fromEntries(Object.entries(trips).map(([k, v]) => [k, Math.round((v / raw) * 1000) / 1000]));
  // Both kinds of trip back to back, as a router makes RabbitMQ do for every event (each figure
  // includes its own publisher's and consumer's CPU, as a router's path has too).
  const twoTripBound =
    Math.round(
      (1 / (raw / (trips['topic-with-herald-headers'] as number) + raw / (trips['topic-with-forward-headers'] as number))) * 1000,
    ) / 1000;
  log('null router (plain amqplib, no store)');
  const stop = await nullRouter(vhost.url);
  const nullRun = summary(await bench(env));
  await stop();
  log('Herald router hub (PostgreSQL)');
  const hub = await startHubProcess({ ...env, HERALD_DATABASE_URL: db.url, HERALD_HTTP_PORT: '0' }, ['--mode', 'router']);
  let hubRun: ReturnType<typeof summary>;
  try {
    hubRun = summary(await bench(env));
  } finally {
    await hub.kill('SIGTERM');
  }
  const share = Math.round((hubRun.endToEndPerSec / nullRun.endToEndPerSec) * 100) / 100;
  process.stdout.write(
    `${JSON.stringify({ count, oneTrip: trips, oneTripRatios, twoTripBound, nullRouter: nullRun, herald: hubRun, heraldShareOfNullRouter: share }, null, 2)}\n`,
  );
} finally {
  await vhost.delete().catch(() => {});
  await db.drop().catch(() => {});
}
