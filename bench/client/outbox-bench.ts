/**
 * The transactional outbox (@herald/client/outbox), against real PostgreSQL and RabbitMQ, no hub:
 *   1. outbox.add: --rows events in transactions of 100, and 1,000 transactions of one event each
 *      (ms per add / per transaction, commit included);
 *   2. the relay: the same rows published to `herald.ingest`, into a durable queue bound there as
 *      the router hub's is (so every confirm waits for RabbitMQ's disk), for each batch size; rows/s
 *      from start() to the last confirm marked sent.
 *
 *   node --conditions=herald-source --import tsx bench/client/outbox-bench.ts [--rows 10000]
 *
 * Needs RabbitMQ (with its management API) and PostgreSQL as the tests do; works in a vhost and a
 * database of its own and removes both. Prints one JSON document; asserts nothing.
 */
import { parseArgs } from 'node:util';
import { declareTopology } from '@herald/client';
import { createOutbox, createOutboxRelay, migrateOutbox } from '@herald/client/outbox';
import { createTestDatabase, createTestVhost } from '@herald/testing';
import { connect } from 'amqplib';
import pg from 'pg';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '10000' } } });
const rows = Number(values.rows);
const [db, vhost] = await Promise.all([createTestDatabase('outbox_bench'), createTestVhost('outbox-bench')]);
const report: Record<string, unknown> = { rows };
try {
  await declareTopology({ url: vhost.url, mode: 'router' });
  const amqp = await connect(vhost.url);
  const ch = await amqp.createChannel();
  await ch.assertQueue('herald.ingest', { durable: true });
  await ch.bindQueue('herald.ingest', 'herald.ingest', '#');
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  await migrateOutbox(pool);
  const outbox = createOutbox();
  const client = await pool.connect();
  let t0 = performance.now();
  for (let i = 0; i < rows; i += 100) {
    await client.query('BEGIN');
    for (let j = i; j < Math.min(i + 100, rows); j++)
      await outbox.add(client, { sender: 'bench', type: 'row.added', payload: { j, pad: 'x'.repeat(200) }, key: `k${j % 50}` });
    await client.query('COMMIT');
  }
  report.addMsInTransactionsOf100 = Number(((performance.now() - t0) / rows).toFixed(3));
  t0 = performance.now();
  for (let j = 0; j < 1000; j++) {
    await client.query('BEGIN');
    await outbox.add(client, { sender: 'bench', type: 'row.added', payload: { j }, key: `k${j % 50}` });
    await client.query('COMMIT');
  }
  report.singleEventTransactionMs = Number(((performance.now() - t0) / 1000).toFixed(3));
  client.release();
  const total = rows + 1000;
  for (const batchSize of [100, 500]) {
    await pool.query('UPDATE herald_outbox SET sent_at = NULL');
    await ch.purgeQueue('herald.ingest');
    const relay = createOutboxRelay({ database: pool, url: vhost.url, batchSize });
    t0 = performance.now();
    const done = new Promise<void>((resolve) => relay.on('published', () => relay.stats.published >= total && resolve()));
    await relay.start();
    await done;
    const ms = performance.now() - t0;
    await relay.stop();
    report[`relayRowsPerSecondBatch${batchSize}`] = Math.round(total / (ms / 1000));
  }
  await pool.end();
  await amqp.close();
} finally {
  await vhost.delete();
  await db.drop();
}
console.log(JSON.stringify(report));
