// Catch-up from the log to one consumer of the manager (no gRPC): stores N events, then one
// consumer reads them all with next(1000) and acks each batch. Prints events/s and peak RSS.
//   node --import tsx bench/hub/catchup-bench.ts [events=200000] [postgres|embedded]
import { createTestDatabase, createTestVhost } from '@herald/testing';
import { openStore } from '../../packages/hub/src/store/index.ts';
import { createSubscriptionManager } from '../../packages/hub/src/subscriptions/manager.ts';

const total = Number(process.argv[2] ?? 200_000);
const kind = process.argv[3] ?? 'postgres';
const vhost = await createTestVhost('catchup');
const db = kind === 'postgres' ? await createTestDatabase('catchup') : undefined;
const store = await openStore(db ? { url: db.url } : { dataDir: `/tmp/herald-catchup-${process.pid}` });
try {
  await store.migrate();
  await store.acquireWriterLease();
  const body = Buffer.from(JSON.stringify({ pad: 'x'.repeat(900) }));
  const t0 = Date.now();
  for (let i = 0; i < total; i += 4000) {
    const n = Math.min(4000, total - i);
    await store.append(
      Array.from({ length: n }, (_, j) => ({
        id: crypto.randomUUID(),
        sender: 'bench',
        type: (i + j) % 2 ? 'a' : 'b',
        time: Date.now(),
        data: body,
        contentType: 'application/json',
        headers: {},
      })),
    );
  }
  console.log(`stored ${total} events in ${Date.now() - t0} ms`);
  const m = createSubscriptionManager({ store, sql: store.sql, amqpUrl: vhost.url });
  await m.start();
  for (const [name, selector] of [
    ['all', 'bench:*'],
    ['half', 'bench:a'],
  ] as const) {
    await m.create({ name, selector, start: 'earliest' });
    const want = selector === 'bench:*' ? total : total / 2;
    const c = await m.attach({ name, consumer: 'bench', maxInFlight: 10_000 });
    let got = 0;
    let rss = 0;
    const t1 = Date.now();
    while (got < want) {
      const batch = await c.next(1000);
      got += batch.length;
      c.ack(batch[batch.length - 1]?.offset as bigint);
      rss = Math.max(rss, process.memoryUsage().rss);
    }
    const ms = Date.now() - t1;
    console.log(
      `${selector}: ${got} events caught up in ${ms} ms = ${Math.round((got / ms) * 1000)} events/s, peak RSS ${Math.round(rss / 2 ** 20)} MiB`,
    );
    await c.close();
  }
  await m.stop();
} finally {
  await store.close();
  await vhost.delete();
  await db?.drop();
}
