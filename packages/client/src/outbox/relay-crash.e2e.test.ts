import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, type RouterHub, spawnHerald, startRouterHub, type TestDatabase, waitFor } from '@herald/testing';
import { type ChannelModel, connect } from 'amqplib';
import pg from 'pg';
import { createOutbox, migrateOutbox } from './index.ts';

// `herald outbox-relay` from source against a router hub: killed with SIGKILL in the middle of
// its work and started again, it publishes every committed row, and the hub's log holds each once,
// in the order of its key.

let hub: RouterHub;
let service: TestDatabase;
let pool: pg.Pool;
let log: pg.Pool;
const SENDER = 'shop';
const KEYS = 20;
let amqp: ChannelModel;
/** Every message id published to herald.ingest, from a queue of the test's own bound there. */
const wire: string[] = [];

before(async () => {
  [hub, service] = await Promise.all([startRouterHub('outbox-crash'), createTestDatabase('outbox_svc')]);
  pool = new pg.Pool({ connectionString: service.url, max: 4 });
  log = new pg.Pool({ connectionString: hub.db.url, max: 2 });
  await migrateOutbox(pool);
  amqp = await connect(hub.vhost.url);
  const ch = await amqp.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'herald.ingest', '#');
  await ch.consume(queue, (m) => m && wire.push(m.properties.messageId as string), { noAck: true });
});

after(async () => {
  await amqp?.close().catch(() => undefined);
  await pool?.end().catch(() => undefined);
  await log?.end().catch(() => undefined);
  await hub?.close();
  await service?.drop().catch(() => undefined);
});

/** Adds `count` events in transactions of ten, each key's events numbered in the order added. */
async function addEvents(from: number, count: number): Promise<string[]> {
  const outbox = createOutbox();
  const ids: string[] = [];
  const client = await pool.connect();
  try {
    for (let i = from; i < from + count; i += 10) {
      await client.query('BEGIN');
      for (let j = i; j < Math.min(i + 10, from + count); j++) {
        const key = `order-${j % KEYS}`;
        ids.push(await outbox.add(client, { sender: SENDER, type: 'order.changed', payload: { key, n: Math.floor(j / KEYS) }, key }));
      }
      await client.query('COMMIT');
    }
  } finally {
    client.release();
  }
  return ids;
}

async function sentRows(): Promise<number> {
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM herald_outbox WHERE sent_at IS NOT NULL');
  return rows[0].n;
}

async function logged(): Promise<number> {
  const { rows } = await log.query('SELECT count(*)::int AS n FROM events WHERE sender = $1', [SENDER]);
  return rows[0].n;
}

function startRelay(batchSize: number) {
  return spawnHerald(
    [
      'outbox-relay',
      '--database-url',
      service.url,
      '--amqp-url',
      hub.vhost.url,
      '--batch-size',
      String(batchSize),
      '--poll-interval',
      '200ms',
    ],
    {},
  );
}

test('a relay killed with SIGKILL mid-batch and restarted publishes every committed row once into the log, in order per key', async () => {
  const first = await addEvents(0, 3000);
  const relay = startRelay(1000);
  await relay.waitFor('active: publishing', 60_000);
  // Mid-batch: rounds run one after the other, so once rows of the second round are on the wire the
  // first round of 1,000 is marked sent and the second is on its way, not yet confirmed and marked
  // (a round may leave in a few large writes, so the count can jump: any row past 1,000 will do).
  await waitFor('the second round on the wire', () => wire.length > 1000, 60_000, 1);
  await relay.kill('SIGKILL');
  const sentAtKill = await sentRows();
  assert.equal(sentAtKill, 1000, 'the kill did not land inside the second round');
  // Committed while no relay runs: they wait in the table.
  const second = await addEvents(3000, 500);
  const again = startRelay(200);
  try {
    await again.waitFor('active: publishing', 60_000);
    await waitFor('every row marked sent', async () => (await sentRows()) === 3500, 120_000, 100);
    await waitFor('every event in the log', async () => (await logged()) >= 3500, 60_000, 100);
  } finally {
    await again.kill('SIGTERM');
  }
  assert.equal(await again.exited, 0);
  const republished = Number(/stopped after publishing (\d+) rows/.exec(again.output())?.[1]);
  const { rows } = await log.query<{ id: string; data: Buffer }>('SELECT id, data FROM events WHERE sender = $1 ORDER BY "offset"', [
    SENDER,
  ]);
  assert.equal(rows.length, 3500, 'the log holds an event twice, or misses one');
  assert.deepEqual(rows.map((r) => r.id).sort(), [...first, ...second].sort());
  const next = new Map<string, number>();
  for (const r of rows) {
    const { key, n } = JSON.parse(r.data.toString()) as { key: string; n: number };
    assert.equal(n, next.get(key) ?? 0, `${key}: event ${n} stored out of order`);
    next.set(key, n + 1);
  }
  const duplicates = wire.length - new Set(wire).size;
  assert.equal(new Set(wire).size, 3500);
  assert.ok(duplicates > 0, 'no row went out twice: the kill was not inside a round');
  assert.equal(republished, 3500 - sentAtKill);
  console.log(
    `killed with ${sentAtKill} of 3000 rows marked sent; the restarted relay published the other ${republished}; ${duplicates} rows went over the wire twice (published, not yet marked at the kill), stored once`,
  );
});

test('herald outbox-relay: --migrate creates the tables; bad flags exit 2; an unreachable database exits 1', async () => {
  const fresh = spawnHerald(['outbox-relay', '--database-url', service.url, '--url', hub.vhost.url, '--migrate', '--schema', 'fresh'], {});
  try {
    await fresh.waitFor('tables ready');
    await fresh.waitFor('active: publishing');
  } finally {
    await fresh.kill('SIGTERM');
  }
  assert.equal(await fresh.exited, 0);
  const { rows } = await pool.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'fresh'");
  assert.equal(rows[0].n, 2);
  for (const [args, mentions] of [
    [[], '--database-url'],
    [['--database-url', 'mysql://x'], 'postgres://'],
    [['--database-url', service.url, '--batch-size', '0'], '--batch-size'],
    [['--database-url', service.url, '--poll-interval', 'soon'], '--poll-interval'],
    [['--database-url', service.url, '--table', 'Bad-Name'], 'outboxTable'],
  ] as const) {
    const p = spawnHerald(['outbox-relay', ...args], {});
    assert.equal(await p.exited, 2, p.output());
    assert.ok(p.stderr().includes(mentions), p.stderr());
  }
  const down = spawnHerald(['outbox-relay', '--database-url', 'postgres://nobody@127.0.0.1:1/none'], {});
  assert.equal(await down.exited, 1, down.output());
  assert.match(down.stderr(), /UNAVAILABLE|outbox database at postgres:\/\/nobody@127\.0\.0\.1:1\/none/);
});
