import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createSubscriber, declareTopology } from '@herald/client';
import { EVENTS_EXCHANGE, INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  makeEvents,
  managementUrl,
  restClient,
  spawnHerald,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import { type ChannelModel, connect } from 'amqplib';

// HERALD_QUEUE_TYPE=quorum on one RabbitMQ node (quorum queues work on one node, replicated on a
// cluster: scripts/cluster.ts runs the same under a node failure): every queue the hub declares is
// a quorum queue, events are ingested and routed, and a queue of the other type stops the start
// with one line and exit 2.

/** The queues of a vhost as the management API describes them. */
async function queueTypes(vhost: string): Promise<Map<string, { type: string; arguments: Record<string, unknown> }>> {
  const url = new URL(managementUrl);
  const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  url.username = '';
  url.password = '';
  const res = await fetch(new URL(`api/queues/${encodeURIComponent(vhost)}`, url.href.endsWith('/') ? url.href : `${url.href}/`), {
    headers: { authorization: `Basic ${auth}` },
  });
  assert.equal(res.status, 200);
  const list = (await res.json()) as { name: string; type: string; arguments: Record<string, unknown> }[];
  return new Map(list.map((q) => [q.name, { type: q.type, arguments: q.arguments }]));
}

describe('HERALD_QUEUE_TYPE=quorum', { timeout: 120_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let conn: ChannelModel;
  const hubs: HeraldProcess[] = [];
  let env: Record<string, string>;

  before(async () => {
    [vhost, db] = await Promise.all([createTestVhost('quorum'), createTestDatabase('quorum')]);
    env = {
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_MODE: 'router',
      HERALD_QUEUE_TYPE: 'quorum',
      HERALD_HTTP_PORT: String(await freePort()),
    };
    conn = await connect(vhost.url);
    conn.on('error', () => undefined);
  });

  after(async () => {
    for (const h of hubs) await h.kill('SIGKILL');
    await conn?.close().catch(() => undefined);
    await vhost?.delete().catch(() => undefined);
    await db?.drop().catch(() => undefined);
  });

  test('the hub declares quorum queues, ingests and routes; a classic hub on them exits 2 with one line', async () => {
    const hub = await startHubProcess(env);
    hubs.push(hub);
    const api = restClient(`http://127.0.0.1:${env.HERALD_HTTP_PORT}`);
    const created = await api('POST', '/api/v1/subscriptions', { name: 'q-sub', selector: ['qa:*'] });
    assert.equal(created.status, 201, created.text);

    // A receiver of its own on herald.events, and events published with confirms.
    const ch = await conn.createChannel();
    const { queue } = await ch.assertQueue('quorum-test-receiver', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch.bindQueue(queue, EVENTS_EXCHANGE, 'qa.#');
    const got = new Map<string, bigint>();
    await ch.consume(queue, (m) => {
      if (!m) return;
      got.set(String(m.properties.messageId), BigInt(String(m.properties.headers?.['x-herald-offset'])));
      ch.ack(m);
    });
    // The SDK takes the hub's quorum herald.dead as it is: `herald topology` and the subscriber's
    // own declarations go through, and the subscriber's named queue is a quorum queue too.
    await declareTopology({ url: vhost.url, mode: 'router' });
    const sdkGot = new Set<string>();
    const sdkErrors: Error[] = [];
    const sdk = createSubscriber(
      { url: vhost.url, selector: 'qa:*', queue: 'quorum-test-sdk', queueType: 'quorum', onError: (e) => sdkErrors.push(e) },
      (e) => void sdkGot.add(e.id),
    );
    assert.equal(await sdk.queue, 'quorum-test-sdk');
    const messages = makeEvents(300, { senders: ['qa'], types: ['one', 'two'] });
    const pub = await createRawPublisher(vhost.url);
    const ok = await pub.publishMany(INGEST_EXCHANGE, messages, 100);
    await pub.close();
    assert.ok(
      ok.every((c) => c),
      'every publish confirmed',
    );
    await waitFor('every event routed to the receiver', () => got.size === messages.length, 30_000);
    await waitFor('every event at the SDK subscriber', () => sdkGot.size === messages.length, 30_000);
    await sdk.close();
    assert.deepEqual(sdkErrors, [], 'the SDK subscriber attached at once');
    for (const m of messages) assert.ok(got.has(String(m.options?.messageId)), 'delivered');
    assert.deepEqual([...new Set(got.values())].length, messages.length, 'one offset per event');
    const pulled = await api('GET', '/api/v1/subscriptions/q-sub/events?wait=0&max=1000');
    assert.equal(pulled.status, 200, pulled.text);
    assert.equal((pulled.json().events as unknown[]).length, messages.length, 'the subscription has them all');

    const types = await queueTypes(vhost.name);
    for (const name of ['herald.ingest', 'herald.dead', 'quorum-test-sdk']) assert.equal(types.get(name)?.type, 'quorum', name);
    assert.equal(types.get('herald.ingest')?.arguments['x-single-active-consumer'], true);
    // A durable subscription is a cursor over the log: no queue of its own.
    assert.deepEqual(
      [...types.keys()].filter((n) => n.startsWith('herald.sub.')),
      [],
    );

    // The same broker objects under a classic hub: RabbitMQ cannot change a queue's type.
    await hub.kill('SIGTERM');
    const classic = spawnHerald(['hub'], { ...env, HERALD_QUEUE_TYPE: 'classic' });
    hubs.push(classic);
    assert.equal(await classic.exited, 2, classic.output().slice(-2000));
    const lines = classic.stderr().trim().split('\n');
    assert.equal(lines.length, 1, classic.stderr());
    assert.match(
      lines[0] as string,
      /^herald: queue herald\.(dead|ingest) in vhost herald-test-quorum-\w+ is a quorum queue but HERALD_QUEUE_TYPE is classic, .*set HERALD_QUEUE_TYPE=quorum, or move: .*rabbitmqctl delete_queue --if-empty/,
    );
  });

  test('a quorum hub on a classic herald.ingest exits 2 naming the queue and what to do, standby or not', async () => {
    const other = await createTestVhost('quorum-old');
    // A hub holding the writer lease of the same database: the next one would wait as a standby,
    // and still reports the queue at start.
    const active = await startHubProcess({ ...env, HERALD_HTTP_PORT: String(await freePort()) });
    hubs.push(active);
    try {
      const c = await connect(other.url);
      const ch = await c.createChannel();
      await ch.assertQueue('herald.ingest', { durable: true, arguments: { 'x-single-active-consumer': true } });
      await c.close();
      const hub = spawnHerald(['hub'], { ...env, HERALD_AMQP_URL: other.url, HERALD_HTTP_PORT: String(await freePort()) });
      hubs.push(hub);
      assert.equal(await hub.exited, 2, hub.output().slice(-2000));
      assert.match(
        hub.stderr(),
        /^herald: queue herald\.ingest in vhost herald-test-quorum-old-\w+ is a classic queue but HERALD_QUEUE_TYPE is quorum, .*delete_queue --if-empty --vhost herald-test-quorum-old-\w+ herald\.ingest.*\n$/,
      );
      // Nothing was lost: the classic queue is still there.
      assert.equal((await queueTypes(other.name)).get('herald.ingest')?.type, 'classic');
      assert.doesNotMatch(hub.output(), /waiting as a standby/, 'reported before waiting as a standby');
    } finally {
      await other.delete();
    }
  });
});
