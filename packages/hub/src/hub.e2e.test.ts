import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  spawnHerald,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor as waitUntil,
} from '@herald/testing';
import { assertComplete, publishFromSenders } from './e2e-kit.ts';
import { checkLog } from './ingest/check-log.ts';
import { openStore } from './store/index.ts';
import type { Store } from './store/types.ts';

const TOTAL = Number(process.env.HERALD_TEST_EVENTS ?? 100_000);

const waitFor = (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 120_000) => waitUntil(what, fn, timeoutMs, 200);

describe('hub process, archive mode', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let reader: Store | undefined;
  const procs: HeraldProcess[] = [];

  before(async () => {
    vhost = await createTestVhost('hub');
    db = await createTestDatabase('hub');
  });
  after(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await reader?.close();
    await vhost?.delete();
    await db?.drop();
  });

  const env = async () => ({
    HERALD_AMQP_URL: vhost.url,
    HERALD_DATABASE_URL: db.url,
    HERALD_MODE: 'archive',
    HERALD_HTTP_PORT: String(await freePort()),
  });

  test(`completeness on PostgreSQL: ${TOTAL} events from several senders, exactly one row each, offsets dense`, async () => {
    const hub = await startHubProcess(await env());
    procs.push(hub);
    const store = await openStore({ url: db.url });
    reader = store;
    const t0 = Date.now();
    const { confirmed } = await publishFromSenders(vhost.url, TOTAL, [['billing'], ['shipping'], ['crm', 'auth'], ['search']]);
    assert.equal(confirmed.length, TOTAL);
    await waitFor('the whole batch stored', async () => (await store.headOffset()) >= BigInt(TOTAL));
    const ms = Date.now() - t0;
    console.log(`# postgres: ${TOTAL} events published and stored in ${ms} ms (${Math.round((TOTAL * 1000) / ms)} events/s end to end)`);
    assertComplete(await checkLog(store), confirmed, true);
    assert.equal(await hub.kill('SIGTERM'), 0, 'graceful stop exits 0');
  });

  test('crash safety: SIGKILL while events stream in, restart; every confirmed event exactly once', async () => {
    const store = reader as Store;
    const base = await checkLog(store);
    let hub = await startHubProcess(await env());
    procs.push(hub);
    const publishing = publishFromSenders(vhost.url, 40_000, [['billing'], ['shipping']]);
    await sleep(1200);
    assert.equal(await hub.kill('SIGKILL'), 'SIGKILL');
    await sleep(500);
    hub = await startHubProcess(await env());
    procs.push(hub);
    const { confirmed } = await publishing;
    assert.equal(confirmed.length, 40_000);
    const expected = base.count + confirmed.length;
    await waitFor('every confirmed event stored', async () => (await store.headOffset()) >= BigInt(expected));
    await sleep(500);
    const log = await checkLog(store);
    assert.equal(log.count, expected, 'nothing lost, nothing twice');
    assertComplete(log, confirmed, false);
    assert.equal(await hub.kill('SIGTERM'), 0);
  });

  test('start errors are one clear line: RabbitMQ unreachable, PostgreSQL unreachable, bad setting', async () => {
    const port = await freePort();
    const noRabbit = spawnHerald(['hub'], { ...(await env()), HERALD_AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}` });
    assert.equal(await noRabbit.exited, 1);
    assert.match(
      noRabbit.stderr(),
      /^herald: cannot reach RabbitMQ at amqp:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): start it with `rabbitmq-server -detached`/,
    );
    assert.equal(noRabbit.stderr().trim().split('\n').length, 1);

    const noPg = spawnHerald(['hub'], { ...(await env()), HERALD_DATABASE_URL: `postgres://root@127.0.0.1:${port}/x` });
    assert.equal(await noPg.exited, 1);
    assert.match(noPg.stderr(), /^herald: cannot reach PostgreSQL at postgres:\/\/127\.0\.0\.1:\d+\/x \(ECONNREFUSED\)/);
    assert.equal(noPg.stderr().trim().split('\n').length, 1);

    const badPort = spawnHerald(['hub'], { ...(await env()), HERALD_HTTP_PORT: 'eighty' });
    assert.equal(await badPort.exited, 2);
    assert.equal(badPort.stderr().trim(), 'herald: invalid HERALD_HTTP_PORT "eighty": expected an integer from 0 to 65535');

    const badMode = spawnHerald(['hub', '--mode', 'fast'], await env());
    assert.equal(await badMode.exited, 2);
    assert.equal(badMode.stderr().trim(), 'herald: invalid --mode "fast": expected router or archive');
  });
});
