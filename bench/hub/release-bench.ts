// Release rate of a resumed pause: N held events (default 100,000) released to herald.events.
//   node --import tsx bench/hub/release-bench.ts [N] [bodyBytes]
// Uses a fresh test database and vhost (HERALD_TEST_DATABASE_URL / HERALD_TEST_AMQP_URL), a queue
// bound to herald.events that counts arrivals, and prints events/s and the process memory peak.
import { createTestDatabase, createTestVhost } from '@herald/testing';
import { createDispatcher } from '../../packages/hub/src/dispatcher/index.ts';
import { createForward, createReceiver, events } from '../../packages/hub/src/dispatcher/test-kit.ts';
import { openStore } from '../../packages/hub/src/store/index.ts';

const n = Number(process.argv[2] ?? 100_000);
const size = Number(process.argv[3] ?? 200);
const db = await createTestDatabase('releasebench');
const vhost = await createTestVhost('releasebench');
try {
  const store = await openStore({ url: db.url });
  await store.migrate();
  await store.acquireWriterLease();
  const fwd = await createForward(vhost.url);
  const rx = await createReceiver(vhost.url, 'bench');
  const d = createDispatcher({ store, forward: fwd.forward });
  await d.start();
  const pause = await d.createPause({ selector: 's1:*', ttl: 3600 });
  const pad = 'x'.repeat(Math.max(0, size - 20));
  for (let i = 0; i < n; i += 5000) {
    const batch = events(Array.from({ length: Math.min(5000, n - i) }, (_, j) => ['s1', `t${j % 3}`] as [string, string])).map((e) => ({
      ...e,
      data: Buffer.from(JSON.stringify({ pad })),
    }));
    await d.dispatch((await store.append(batch)).stored);
  }
  const held = (await d.getPause(pause.id))?.held;
  global.gc?.();
  const base = process.memoryUsage();
  let peakRss = base.rss;
  let peakHeap = base.heapUsed;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 20);
  const t0 = performance.now();
  await d.resume(pause.id);
  await d.idle();
  const released = performance.now() - t0;
  await rx.waitFor(n, 120_000);
  const arrived = performance.now() - t0;
  clearInterval(sampler);
  const mb = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;
  console.log(
    JSON.stringify({
      events: n,
      held,
      bodyBytes: size,
      releasedMs: Math.round(released),
      releaseRate: Math.round(n / (released / 1000)),
      allArrivedMs: Math.round(arrived),
      rssBefore: mb(base.rss),
      rssPeak: mb(peakRss),
      heapBefore: mb(base.heapUsed),
      heapPeak: mb(peakHeap),
      inOrder: rx.seen.every((s, i) => i === 0 || s.offset > (rx.seen[i - 1]?.offset ?? 0n)),
    }),
  );
  await d.stop();
  await rx.close();
  await fwd.close();
  await store.close();
} finally {
  await vhost.delete();
  await db.drop();
}
