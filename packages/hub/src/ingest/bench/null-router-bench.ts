/**
 * What two trips through RabbitMQ cost on this machine, without Herald: a "null router" in plain
 * amqplib takes every message of queue `herald.ingest` and publishes it to `herald.events` (same
 * topology, persistent, publisher confirms, acks with `multiple` once the forwards are confirmed,
 * pipelined like the hub — but no store, no parsing), and `herald bench --receivers all --baseline`
 * measures it end to end beside raw amqplib (one queue) in the same run. Then the same bench through
 * the real router hub on PostgreSQL. The ratio of the two says how much of RabbitMQ's two-hop
 * ceiling the hub reaches.
 *
 *   node --import tsx packages/hub/src/ingest/bench/null-router-bench.ts [count=50000]
 *
 * Prints one JSON document; asserts nothing.
 */
import { EVENTS_EXCHANGE } from '@herald/core';
import { createTestDatabase, createTestVhost, spawnHerald, startHubProcess } from '@herald/testing';
import { connect, type Message } from 'amqplib';
import type { BenchReport } from '../../../../cli/src/bench/index.ts';
import { declareRouterQueue, declareShared, ROUTER_QUEUE } from '../topology.ts';

const count = Number(process.argv[2] ?? 50_000);

function log(line: string): void {
  process.stderr.write(`null-router-bench: ${line}\n`);
}

/** Starts the null router; resolves with a stop function. */
async function nullRouter(url: string): Promise<() => Promise<void>> {
  const conn = await connect(url, { noDelay: true });
  const pubConn = await connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  const pub = await pubConn.createConfirmChannel();
  await declareShared(ch);
  await declareRouterQueue(ch);
  await ch.prefetch(2000);
  let pending: Message[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const batch = pending;
    pending = [];
    if (batch.length === 0) return;
    let left = batch.length;
    for (const m of batch) {
      pub.publish(EVENTS_EXCHANGE, m.fields.routingKey, m.content, { ...m.properties, persistent: true }, (err) => {
        if (!err && --left === 0) ch.ack(batch[batch.length - 1] as Message, true);
      });
    }
  };
  await ch.consume(ROUTER_QUEUE, (m) => {
    if (!m) return;
    pending.push(m);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
  return async () => {
    await ch.close().catch(() => undefined);
    await pub.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
    await pubConn.close().catch(() => undefined);
  };
}

async function bench(env: Record<string, string>): Promise<BenchReport> {
  const p = spawnHerald(['bench', '--json', '--quiet', '--receivers', 'all', '--count', String(count), '--baseline'], env);
  await p.exited;
  const out = p.output();
  return JSON.parse(out.slice(out.indexOf('{"'), out.lastIndexOf('}') + 1)) as BenchReport;
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
  process.stdout.write(`${JSON.stringify({ count, nullRouter: nullRun, herald: hubRun, heraldShareOfNullRouter: share }, null, 2)}\n`);
} finally {
  await vhost.delete().catch(() => {});
  await db.drop().catch(() => {});
}
