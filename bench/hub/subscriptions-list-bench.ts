// Listing durable subscriptions with their lag (GET /api/v1/subscriptions → manager.list()): stores
// E events of 50 senders × 100 types, creates N subscriptions of distinct selectors (a third of
// them two patterns), then times list() (lagMany: per-pattern index counts, lag-sql.ts) against the
// statements it replaced (lagManyByUnion: one UNION of the patterns per selector, 20 selectors a
// statement), side by side in one run, median and fastest of 7 each, first with every subscription
// behind, then with 60% acknowledged at the head (live consumers). Both must give the same lags.
//   node --import tsx bench/hub/subscriptions-list-bench.ts [subscriptions=1000] [events=100000] [postgres|embedded]
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createTestDatabase } from '@herald/testing';
import { openStore } from '../../packages/hub/src/store/index.ts';
import { lagManyByUnion } from '../../packages/hub/src/store/lag-sql.ts';
import { createSubscriptionManager } from '../../packages/hub/src/subscriptions/manager.ts';

const subscriptions = Number(process.argv[2] ?? 1000);
const total = Number(process.argv[3] ?? 100_000);
const kind = process.argv[4] ?? 'postgres';
const db = kind === 'postgres' ? await createTestDatabase('sublist') : undefined;
const dir = `/tmp/herald-sublist-${process.pid}`;
const store = await openStore(db ? { url: db.url } : { dataDir: dir });

/** Median and fastest of 7 runs after one to warm up: the fastest is what a loaded machine disturbs least. */
async function timed(fn: () => Promise<unknown>): Promise<string> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return `${(times[3] as number).toFixed(1)} ms (fastest ${(times[0] as number).toFixed(1)})`;
}

try {
  await store.migrate();
  await store.acquireWriterLease();
  const body = Buffer.from(JSON.stringify({ pad: 'x'.repeat(200) }));
  for (let i = 0; i < total; i += 4000) {
    const n = Math.min(4000, total - i);
    await store.append(
      Array.from({ length: n }, (_, j) => ({
        id: crypto.randomUUID(),
        sender: `s${(i + j) % 50}`,
        type: `t${(i + j) % 97}`,
        time: Date.now(),
        data: body,
        contentType: 'application/json',
        headers: {},
      })),
    );
  }
  const head = await store.headOffset();
  // The log as autovacuum leaves it at rest: statistics and the visibility map (index-only scans).
  await store.sql.query('VACUUM ANALYZE events');
  let m = createSubscriptionManager({ store, sql: store.sql });
  await m.start();
  for (let i = 0; i < subscriptions; i++) {
    const one = `s${i % 50}:t${Math.floor(i / 50) % 100}`;
    const selector = i % 3 === 0 ? `${one}, s${(i + 7) % 50}:*` : one;
    await m.create({ name: `sub-${String(i).padStart(5, '0')}`, selector, start: { offset: BigInt((i * 7919) % Number(head)) } });
  }
  console.log(`${kind}: ${total} events, ${subscriptions} subscriptions of distinct selectors`);
  for (const scenario of ['all behind', '60% at the head'] as const) {
    if (scenario === '60% at the head') {
      const views = await m.list();
      await store.subscriptions.saveAcked(views.filter((_, i) => i % 5 < 3).map((v) => ({ name: v.name, acked: head })));
      await m.stop();
      m = createSubscriptionManager({ store, sql: store.sql });
      await m.start();
    }
    const views = await m.list();
    const byUnion = async () => {
      const at = await store.headOffset();
      const behind = views.filter((v) => v.ackedOffset < at);
      return lagManyByUnion(
        store.sql,
        behind.map((v) => ({ selector: v.selector, after: v.ackedOffset })),
        at,
      );
    };
    const behindViews = views.filter((v) => v.ackedOffset < head);
    const old = await byUnion();
    const now = await store.subscriptions.lagMany(
      behindViews.map((v) => ({ selector: v.selector, after: v.ackedOffset })),
      head,
    );
    assert.deepEqual(now, old, 'the same lags and oldest events');
    assert.deepEqual(
      behindViews.map((v) => v.lagEvents),
      old.map((l) => l.events),
      'list() shows them',
    );
    const before = await timed(byUnion);
    const after = await timed(() => m.list());
    const behind = views.reduce((n, v) => n + v.lagEvents, 0);
    console.log(`${scenario} (${behind} events behind in all): by UNION ${before}, list() ${after} (median of 7)`);
  }
  await m.stop();
} finally {
  await store.close();
  await db?.drop();
  if (!db) rmSync(dir, { recursive: true, force: true });
}
