// The hub is SIGKILLed while 5,000 events published with the SDK's hub publisher are in flight on
// its PublishStream, then started again: the publisher reconnects by itself and sends again what
// was not answered (same ids). Every publish resolves, and each of the 5,000 events is in the log
// exactly once: none lost, none doubled.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHubPublisher, type HubPublishReceipt } from '@herald/client';
import { uuidv7 } from '@herald/core';
import { type RouterHub, startRouterHub, waitFor } from '@herald/testing';
import { openStore } from '../store/index.ts';
import type { Store, StoredEvent } from '../store/types.ts';

const TOTAL = 5000;

describe('PublishStream across a hub SIGKILL (e2e: hub process)', { timeout: 150_000 }, () => {
  let fx: RouterHub;
  let reader: Store;

  before(async () => {
    fx = await startRouterHub('pubkill');
    reader = await openStore({ url: fx.db.url });
  });
  after(async () => {
    await reader?.close();
    await fx?.close();
  });

  test('every resolved publish is in the log exactly once after the restart; none is lost', async () => {
    const errors: Error[] = [];
    const publisher = createHubPublisher({
      sender: 'billing',
      url: fx.grpc,
      maxPending: TOTAL,
      confirmTimeoutMs: 0,
      reconnectMaxDelayMs: 500,
      onError: (e) => errors.push(e),
    });
    const run = uuidv7();
    const ids = Array.from({ length: TOTAL }, () => uuidv7());
    let resolved = 0;
    const all = Promise.all(
      ids.map((id, i) =>
        publisher.publish('kill.event', { run, i }, { id }).then((r) => {
          resolved += 1;
          return r;
        }),
      ),
    );
    await waitFor('some publishes answered', () => resolved >= 200, 30_000, 1);
    const atKill = resolved;
    assert.equal(await fx.hub.kill('SIGKILL'), 'SIGKILL');
    assert.ok(atKill < TOTAL, `the hub dies with publishes in flight (${atKill} answered)`);
    await sleep(300);
    await fx.start();
    const receipts: HubPublishReceipt[] = await all;
    await publisher.close();
    assert.deepEqual(
      receipts.map((r) => r.id),
      ids,
      'every publish resolved with its id',
    );

    let log: StoredEvent[] = [];
    await waitFor(
      'the log has every event',
      async () => {
        log = await readAll(reader, 'billing:kill.event');
        return new Set(log.map((e) => e.id)).size >= TOTAL;
      },
      40_000,
    );
    const counts = new Map<string, number>();
    for (const e of log) counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
    assert.equal(log.length, TOTAL, 'no event stored twice');
    assert.ok(
      ids.every((id) => counts.get(id) === 1),
      'each id exactly once',
    );
    assert.ok(errors.length > 0, 'the publisher saw the stream break');
    console.log(`# ${atKill} of ${TOTAL} answered at the kill; ${errors.length} stream errors until the hub was back`);
  });
});

async function readAll(reader: Store, selector: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for (;;) {
    const page = await reader.query({ selector, after: out.at(-1)?.offset, limit: 10_000 });
    out.push(...page);
    if (page.length < 10_000) return out;
  }
}
