import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestVhost, managementUrl, type TestVhost } from '@herald/testing';
import { createPublisher, createSubscriber, declareTopology, type PublishReceipt } from './index.ts';

let vhost: TestVhost;

before(async () => {
  vhost = await createTestVhost('client-reconnect');
  await declareTopology({ url: vhost.url, mode: 'archive' });
});

after(async () => {
  await vhost?.delete();
});

const PER_SENDER = 10_000;
/** Events per sender per second: slow enough that the drops land mid-stream. */
const RATE = 500;

/** Connections to the vhost as the management API lists them (it learns of new ones in ~2 s). */
async function connectionCount(): Promise<number> {
  const url = new URL(managementUrl);
  const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  const res = await fetch(`${url.origin}/api/vhosts/${encodeURIComponent(vhost.name)}/connections`, {
    headers: { authorization: `Basic ${auth}` },
  });
  return res.ok ? ((await res.json()) as unknown[]).length : 0;
}
const SENDERS = ['alpha', 'beta'];

/**
 * The guarantee under test: every publish that RabbitMQ confirmed reaches the subscriber, whatever
 * the connection drops, and each sender's events first arrive in the order they were published.
 * "Order" is the order of first arrival: after a drop, RabbitMQ redelivers what was unacked and
 * the publisher re-sends what was unconfirmed, so some events arrive twice (at least once); the
 * repeats are ignored, and the first copies must be in publish order with none missing.
 */
test('every confirmed event arrives, in order per sender, across three dropped connections', async () => {
  const firstSeen = new Map<string, number[]>(SENDERS.map((s) => [s, []]));
  const ids = new Set<string>();
  let deliveries = 0;
  const sub = createSubscriber({ url: vhost.url, selector: SENDERS.map((s) => `${s}:*`), queue: 'survivor', prefetch: 200 }, (e) => {
    deliveries++;
    if (ids.has(e.id)) return;
    ids.add(e.id);
    firstSeen.get(e.sender)?.push(JSON.parse(e.data.toString()).i);
  });
  await sub.queue;

  const publishers = SENDERS.map((sender) => createPublisher({ url: vhost.url, sender, maxPending: 1000 }));
  let confirmed = 0;
  const started = Date.now();
  let published = 0;
  const results = publishers.map(async (pub) => {
    const all: Promise<PublishReceipt>[] = [];
    for (let i = 0; i < PER_SENDER; i++) {
      all.push(
        pub.publish('load.tick', { i }).then((r) => {
          confirmed++;
          return r;
        }),
      );
      published++;
      if (i % 50 === 49) await sleep((50 * 1000) / RATE);
    }
    return Promise.allSettled(all);
  });

  let dropped = 0;
  for (let drop = 0; drop < 3; drop++) {
    // Drop only once all three clients are connected again, so each drop cuts all of them.
    while ((await connectionCount()) < 3) await sleep(100);
    await sleep(200);
    assert.ok(published < PER_SENDER * SENDERS.length, 'the drops should land while publishing');
    const n = await vhost.dropConnections();
    dropped += n;
    process.stdout.write(
      `# drop ${drop + 1} at ${Date.now() - started} ms: ${n} connections, ${published} published, ${confirmed} confirmed\n`,
    );
  }
  const settled = (await Promise.all(results)).flat();
  const publishMs = Date.now() - started;
  const failed = settled.filter((r) => r.status === 'rejected');
  assert.equal(failed.length, 0, `publishes failed: ${failed.slice(0, 3).map((r) => String((r as PromiseRejectedResult).reason))}`);
  assert.ok(dropped >= 6, `expected to drop the 3 clients' connections 3 times, dropped ${dropped}`);

  const confirmedIds = settled.map((r) => (r as PromiseFulfilledResult<PublishReceipt>).value.id);
  const deadline = Date.now() + 20_000;
  while (confirmedIds.some((id) => !ids.has(id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const missing = confirmedIds.filter((id) => !ids.has(id));
  assert.equal(missing.length, 0, `${missing.length} confirmed events never arrived`);

  for (const sender of SENDERS) {
    const seen = firstSeen.get(sender) ?? [];
    assert.equal(seen.length, PER_SENDER);
    const outOfOrder = seen.findIndex((n, k) => n !== k);
    assert.equal(
      outOfOrder,
      -1,
      `${sender}: first arrivals out of order at position ${outOfOrder}: ${seen.slice(outOfOrder - 2, outOfOrder + 3)}`,
    );
  }
  process.stdout.write(
    `# ${confirmedIds.length} confirmed in ${publishMs} ms with ${dropped} connections dropped; ${deliveries} deliveries (${deliveries - ids.size} repeats)\n`,
  );
  await Promise.all(publishers.map((p) => p.close()));
  await sub.close();
});
