import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestVhost, freePort, type HeraldProcess, startHubProcess, type TestVhost, waitFor as waitUntil } from '@herald/testing';
import { assertComplete, publishFromSenders, queueDepth } from './e2e-kit.ts';
import { checkLog } from './ingest/check-log.ts';
import { ARCHIVE_QUEUE } from './ingest/index.ts';
import { openStore } from './store/index.ts';

const EMBEDDED_TOTAL = Number(process.env.HERALD_TEST_EMBEDDED_EVENTS ?? 100_000);

const waitFor = (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 120_000) => waitUntil(what, fn, timeoutMs, 200);

describe('hub process, archive mode, embedded store', () => {
  let vhost: TestVhost;
  let dir: string;
  let hub: HeraldProcess | undefined;

  before(async () => {
    vhost = await createTestVhost('hub-embedded');
    dir = await mkdtemp(join(tmpdir(), 'herald-embedded-'));
  });
  after(async () => {
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await rm(dir, { recursive: true, force: true });
  });

  test(`completeness on the embedded store: ${EMBEDDED_TOTAL} events, one row each, offsets dense`, async () => {
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: join(dir, 'store'),
      HERALD_MODE: 'archive',
      HERALD_HTTP_PORT: String(await freePort()),
    });
    const t0 = Date.now();
    const { confirmed } = await publishFromSenders(vhost.url, EMBEDDED_TOTAL, [['billing'], ['shipping'], ['crm']]);
    assert.equal(confirmed.length, EMBEDDED_TOTAL);
    // Everything delivered to the hub; a graceful stop stores what it holds before closing.
    await waitFor('herald.store drained', async () => (await queueDepth(vhost.url, ARCHIVE_QUEUE)) === 0, 180_000);
    assert.equal(await hub.kill('SIGTERM'), 0);
    const ms = Date.now() - t0;
    hub = undefined;
    assert.equal(await queueDepth(vhost.url, ARCHIVE_QUEUE), 0, 'nothing left unstored');
    const store = await openStore({ dataDir: join(dir, 'store') });
    try {
      const log = await checkLog(store);
      console.log(
        `# embedded: ${EMBEDDED_TOTAL} events published and stored in ${ms} ms (${Math.round((EMBEDDED_TOTAL * 1000) / ms)} events/s end to end)`,
      );
      assertComplete(log, confirmed, true);
    } finally {
      await store.close();
    }
  });
});
