import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, createTestDatabase, createTestVhost, freePort, makeEvents, rssMiB, spawnHerald } from '@herald/testing';
import { connect } from 'amqplib';
import { declareArchive, declareShared } from '../../packages/hub/src/ingest/topology.ts';
import { openStore } from '../../packages/hub/src/store/index.ts';

const count = Number(process.argv[2] ?? 100_000);
const bytes = Number(process.argv[3] ?? 1024);

async function fill(url: string, queue: string, archive: boolean): Promise<number> {
  const conn = await connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  await declareShared(ch);
  if (archive) {
    await declareArchive(ch);
  } else {
    await ch.assertQueue(queue, { durable: true });
    await ch.bindQueue(queue, INGEST_EXCHANGE, '#');
  }
  await conn.close();
  const t0 = Date.now();
  const pubs = await Promise.all([1, 2, 3, 4].map(() => createRawPublisher(url)));
  const per = count / pubs.length;
  await Promise.all(pubs.map((p, i) => p.publishMany(INGEST_EXCHANGE, makeEvents(per, { size: bytes, senders: [`s${i}`] }), 2000)));
  await Promise.all(pubs.map((p) => p.close()));
  return Math.round((count * 1000) / (Date.now() - t0));
}

async function depth(url: string, queue: string): Promise<number> {
  const conn = await connect(url);
  try {
    return (await (await conn.createChannel()).checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

async function rawConsume(): Promise<number> {
  const vhost = await createTestVhost('bench-raw');
  try {
    await fill(vhost.url, 'raw', false);
    const conn = await connect(vhost.url, { noDelay: true });
    const ch = await conn.createChannel();
    await ch.prefetch(2000);
    const t0 = Date.now();
    let n = 0;
    await new Promise<void>((resolve) => {
      void ch.consume('raw', (m) => {
        if (!m) return;
        n++;
        if (n % 500 === 0 || n === count) ch.ack(m, true);
        if (n === count) resolve();
      });
    });
    const rate = Math.round((count * 1000) / (Date.now() - t0));
    await conn.close();
    return rate;
  } finally {
    await vhost.delete();
  }
}

async function hubRun(kind: 'postgres' | 'embedded'): Promise<{ rate: number; publishRate: number; peakRss: number; stored: bigint }> {
  const vhost = await createTestVhost(`bench-${kind}`);
  const db = kind === 'postgres' ? await createTestDatabase('bench') : undefined;
  const dir = kind === 'embedded' ? await mkdtemp(join(tmpdir(), 'herald-bench-')) : undefined;
  const databaseUrl = db ? db.url : join(dir as string, 'store');
  try {
    const publishRate = await fill(vhost.url, 'herald.store', true);
    const hub = spawnHerald(['hub'], {
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: databaseUrl,
      HERALD_MODE: 'archive',
      HERALD_HTTP_PORT: String(await freePort()),
      HERALD_LOG_LEVEL: process.env.HERALD_BENCH_LOG_LEVEL ?? 'warn',
    });
    // With log level warn the running line is not printed: watch the queue instead.
    let peakRss = 0;
    const t0 = Date.now();
    let started = 0;
    for (;;) {
      peakRss = Math.max(peakRss, rssMiB(hub.child.pid ?? 0) ?? 0);
      const d = await depth(vhost.url, 'herald.store');
      if (!started && d < count) started = Date.now();
      if (d === 0) break;
      await sleep(100);
    }
    const exit = await hub.kill('SIGTERM');
    const end = Date.now();
    const left = await depth(vhost.url, 'herald.store');
    if (exit !== 0 || left !== 0) console.log(`hub exit ${exit}, ${left} left in herald.store\n${hub.output().slice(-2000)}`);
    const store = await openStore(db ? { url: db.url } : { dataDir: databaseUrl });
    const stored = await store.headOffset();
    await store.close();
    const rate = Math.round((Number(stored) * 1000) / (end - (started || t0)));
    return { rate, publishRate, peakRss, stored };
  } finally {
    await vhost.delete();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

console.log(`ingest bench: ${count} events of ${bytes} bytes, archive mode`);
console.log(`raw RabbitMQ consume+ack: ${await rawConsume()} msg/s`);
for (const kind of (process.env.HERALD_BENCH_STORES ?? 'postgres,embedded').split(',') as ('postgres' | 'embedded')[]) {
  const r = await hubRun(kind);
  console.log(
    `hub on ${kind}: ${r.rate} events/s stored (${r.stored} stored; publish rate ${r.publishRate}/s), peak hub RSS ${r.peakRss} MiB`,
  );
}
