import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, createTestDatabase, createTestVhost, freePort, makeEvents, rssMiB, startHubProcess } from '@herald/testing';
import { createReceiver } from '../../packages/hub/src/dispatcher/test-kit.ts';

const n = Number(process.argv[2] ?? 100_000);
const size = Number(process.argv[3] ?? 200);
const [db, vhost, port] = await Promise.all([createTestDatabase('relhub'), createTestVhost('relhub'), freePort()]);
const hub = await startHubProcess({
  HERALD_AMQP_URL: vhost.url,
  HERALD_DATABASE_URL: db.url,
  HERALD_MODE: 'router',
  HERALD_HTTP_PORT: String(port),
  HERALD_LOG_LEVEL: 'info',
});
const hubRss = () => rssMiB(hub.child.pid as number) ?? 0;
const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
};
try {
  const rx = await createReceiver(vhost.url, 'bench', 's1.#');
  const pause = await api<{ id: string }>('POST', '/pauses', { selector: 's1:*', ttl: 3600 });
  const pub = await createRawPublisher(vhost.url);
  const ok = await pub.publishMany(INGEST_EXCHANGE, makeEvents(n, { senders: ['s1'], size }), 1000);
  await pub.close();
  if (!ok.every(Boolean)) throw new Error('some publishes were not confirmed');
  for (;;) {
    const p = await api<{ held: number }>('GET', `/pauses/${pause.id}`);
    if (p.held >= n) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const rssHeld = hubRss();
  let peak = rssHeld;
  const sampler = setInterval(() => {
    peak = Math.max(peak, hubRss());
  }, 50);
  const t0 = performance.now();
  await api('DELETE', `/pauses/${pause.id}`);
  await rx.waitFor(n, 300_000);
  const ms = performance.now() - t0;
  clearInterval(sampler);
  const inOrder = rx.seen.every((s, i) => i === 0 || s.offset > (rx.seen[i - 1]?.offset ?? 0n));
  console.log(
    JSON.stringify({
      events: n,
      bodyBytes: size,
      releaseMs: Math.round(ms),
      releaseRate: Math.round(n / (ms / 1000)),
      hubRssWhileHeldMiB: Math.round(rssHeld),
      hubRssPeakDuringReleaseMiB: Math.round(peak),
      inOrder,
      duplicates: rx.seen.length - new Set(rx.seen.map((s) => s.offset)).size,
    }),
  );
  await rx.close();
} finally {
  await hub.kill('SIGTERM');
  await vhost.delete();
  await db.drop();
}
