/**
 * Durable subscriptions over gRPC, measured against a real hub process on PostgreSQL:
 *   1. catch-up: a log of N stored events (default 1,000,000, 1 KiB each), one SDK consumer of a new
 *      subscription `*:*` starting at `earliest` reads them all (acking as it goes); events/s and the
 *      hub's peak RSS while it does;
 *   2. live: a second subscription at 1,000 events/s published to `herald.ingest` (plain amqplib
 *      with confirms): latency from publish to the consumer's loop, p50/p99, and beside it, in the
 *      same run, an AMQP queue bound to `herald.events` (the router's own delivery) for reference.
 *
 *   node --import tsx bench/subscriptions-bench.ts [--events 1000000] [--rate 1000] [--seconds 20]
 *
 * Needs RabbitMQ (with its management API) and PostgreSQL as the tests do; works in a vhost and a
 * database of its own and removes both. Prints one JSON document; asserts nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { subscription } from '@herald/client/grpc';
import { EVENTS_EXCHANGE, INGEST_EXCHANGE } from '@herald/core';
import { openStore } from '@herald/hub';
import { createRawPublisher, createTestDatabase, createTestVhost, type HeraldProcess, sampleRss, startHubProcess } from '@herald/testing';
import { connect } from 'amqplib';

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '1000000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
  },
});
const TOTAL = Number(args.events);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const FILL_CHUNK = 100_000;

function log(line: string): void {
  process.stderr.write(`grpc-bench: ${line}\n`);
}

function percentiles(samples: number[]): { p50: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(s[s.length - 1] ?? Number.NaN) };
}

const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

/** The log filled in place, N rows of 1 KiB (the append path has its own bench). */
async function fill(url: string): Promise<number> {
  const store = await openStore({ url });
  try {
    await store.migrate();
    const data = Buffer.from(JSON.stringify({ pad: 'x'.repeat(1000) }));
    const t0 = performance.now();
    for (let from = 1; from <= TOTAL; from += FILL_CHUNK) {
      const to = Math.min(TOTAL, from + FILL_CHUNK - 1);
      await store.sql.query(
        `INSERT INTO events ("offset", id, sender, type, time, stored_at, content_type, headers, data)
         SELECT g, gen_random_uuid(), 's' || (g % 10 + 1), 't' || ((g / 10) % 20 + 1),
                now(), now(), 'application/json', '{}'::jsonb, $3::bytea
         FROM generate_series($1::bigint, $2::bigint) g`,
        [from, to, data],
      );
    }
    // The fill wrote ~1 GB at once: settle it (vacuum, checkpoint) so the live figures measure the
    // hub, not PostgreSQL flushing the fill.
    await store.sql.query('VACUUM ANALYZE events');
    await store.sql.query('CHECKPOINT');
    return round((performance.now() - t0) / 1000, 1);
  } finally {
    await store.close();
  }
}

async function catchUp(grpcUrl: string, hub: HeraldProcess) {
  const rss = sampleRss(hub.child.pid as number);
  const sub = subscription('bench-catchup', '*:*', { url: grpcUrl, start: 'earliest', maxInFlight: 5000 });
  const t0 = performance.now();
  let n = 0;
  let last = 0n;
  let outOfOrder = 0;
  for await (const event of sub) {
    if (event.offset <= last) outOfOrder++;
    last = event.offset;
    n++;
    if (n % 1000 === 0 || n === TOTAL) event.ack();
    if (n % 200_000 === 0) log(`catch-up: ${n} events`);
    if (n >= TOTAL) break;
  }
  const seconds = (performance.now() - t0) / 1000;
  await sub.close();
  return { events: n, seconds: round(seconds, 1), perSec: Math.round(n / seconds), outOfOrder, hubPeakRssMiB: rss.stop() };
}

async function live(grpcUrl: string, amqpUrl: string) {
  // The reference: a plain queue on herald.events, as any AMQP receiver of the router's flow.
  const conn = await connect(amqpUrl, { noDelay: true });
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, EVENTS_EXCHANGE, '#');
  const amqpLatency: number[] = [];
  await ch.consume(
    queue,
    (msg) => {
      if (!msg) return;
      const sent = Number(msg.properties.headers?.['x-herald-time']);
      amqpLatency.push(Date.now() - sent);
      ch.ack(msg);
    },
    { noAck: false },
  );
  const sub = subscription('bench-live', '*:*', { url: grpcUrl, start: 'new', maxInFlight: 1000 });
  const grpcLatency: number[] = [];
  const expected = RATE * SECONDS;
  const reading = (async () => {
    for await (const event of sub) {
      grpcLatency.push(Date.now() - event.time);
      event.ack();
      if (grpcLatency.length >= expected) break;
    }
  })();
  // The subscription is created by its first open; give it a moment to be live before publishing.
  await sleep(1000);
  const publisher = await createRawPublisher(amqpUrl);
  const data = Buffer.from(JSON.stringify({ pad: 'x'.repeat(1000) }));
  const t0 = performance.now();
  const confirms: Promise<boolean>[] = [];
  for (let i = 0; i < expected; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    confirms.push(
      publisher.publish(INGEST_EXCHANGE, {
        routingKey: `s${(i % 10) + 1}.t${(i % 20) + 1}`,
        content: data,
        options: { messageId: crypto.randomUUID(), contentType: 'application/json', headers: { 'x-herald-time': Date.now() } },
      }),
    );
  }
  const ok = (await Promise.all(confirms)).filter(Boolean).length;
  await Promise.race([reading, sleep(30_000)]);
  await sub.close();
  await publisher.close();
  await conn.close();
  return {
    published: ok,
    grpcSubscription: { received: grpcLatency.length, latencyMs: percentiles(grpcLatency) },
    amqpOnHeraldEvents: { received: amqpLatency.length, latencyMs: percentiles(amqpLatency) },
  };
}

const vhost = await createTestVhost('grpcbench');
const db = await createTestDatabase('grpcbench');
try {
  log(`filling the log with ${TOTAL} events`);
  const fillSeconds = await fill(db.url);
  log(`filled in ${fillSeconds} s; starting the hub (router mode, PostgreSQL)`);
  const hub = await startHubProcess({
    HERALD_AMQP_URL: vhost.url,
    HERALD_DATABASE_URL: db.url,
    HERALD_HTTP_PORT: '0',
    ...(process.env.BENCH_HUB_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_HUB_NODE_OPTIONS } : {}),
  });
  try {
    const grpcUrl = `127.0.0.1:${hub.grpcPort()}`;
    const catchup = await catchUp(grpcUrl, hub);
    log(`catch-up: ${catchup.perSec} events/s`);
    const paced = await live(grpcUrl, vhost.url);
    process.stdout.write(
      `${JSON.stringify({ events: TOTAL, fillSeconds, catchup, live: { rate: RATE, seconds: SECONDS, ...paced } }, null, 2)}\n`,
    );
  } finally {
    await hub.kill('SIGTERM');
  }
} finally {
  await vhost.delete().catch(() => {});
  await db.drop().catch(() => {});
}
