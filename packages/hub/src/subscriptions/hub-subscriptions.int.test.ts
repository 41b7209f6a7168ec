import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, createTestDatabase, createTestVhost, makeEvents, type TestDatabase, type TestVhost } from '@herald/testing';
import { normalizeConfig } from '../config/index.ts';
import { createHub, type Hub } from '../hub.ts';
import { drain, offsetsOf } from './test-kit.ts';

// The manager as the hub runs it: created with the writer lease in router mode, fed by the real
// ingest and dispatcher, stopped and restored with the hub; replays into one subscription by REST.
describe('subscriptions in the hub (in process, postgres + RabbitMQ)', { timeout: 60_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: Hub | undefined;

  const start = async () => {
    const h = createHub(
      normalizeConfig(
        {
          amqpUrl: vhost.url,
          databaseUrl: db.url,
          httpPort: 0,
          grpcPort: 0,
          logLevel: process.env.DEBUG_SUBSCRIPTIONS ? 'info' : 'silent',
        },
        {},
      ),
    );
    await h.start();
    return h;
  };

  before(async () => {
    [vhost, db] = await Promise.all([createTestVhost('hubsubs'), createTestDatabase('hubsubs')]);
  });
  after(async () => {
    await hub?.stop();
    await vhost?.delete();
    await db?.drop();
  });

  test('published events reach an attached consumer; a replay by REST re-sends marked; state survives a restart', async () => {
    hub = await start();
    assert.equal(hub.state(), 'running');
    assert.ok(hub.grpcAddress() !== undefined);
    const m = hub.subscriptions();
    assert.ok(m, 'the manager runs in router mode with the lease');
    await m.create({ name: 'bill', selector: 'billing:*', start: 'earliest' });
    const pub = await createRawPublisher(vhost.url);
    const msgs = makeEvents(400);
    const ok = await pub.publishMany(INGEST_EXCHANGE, msgs, 200);
    assert.ok(ok.every(Boolean));
    const c = await m.attach({ name: 'bill', consumer: 'test', maxInFlight: 500 });
    const got = await drain(c, (g) => g.length >= 100);
    assert.equal(got.length, 100);
    assert.ok(got.every((e) => e.sender === 'billing'));
    const offs = offsetsOf(got);
    for (let i = 1; i < offs.length; i++) assert.ok((offs[i] as number) > (offs[i - 1] as number));

    const { port } = hub.address() as { port: number };
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/replays`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ selector: 'billing:invoice.paid', from: { last: 5 }, target: { subscription: 'bill' } }),
    });
    const body = (await res.json()) as { id: string; status: string; count: number };
    assert.equal(res.status, 202, JSON.stringify(body));
    assert.equal(body.status, 'running');
    assert.equal(body.count, 5);
    const replayed = await drain(c, (g) => g.length >= 5);
    assert.ok(replayed.every((e) => e.replay === body.id && e.type === 'invoice.paid'));
    const shown = await fetch(`http://127.0.0.1:${port}/api/v1/replays/${body.id}`);
    const kept = (await shown.json()) as { target: unknown; status: string; count: number };
    assert.equal(shown.status, 200, JSON.stringify(kept));
    assert.deepEqual([kept.target, kept.status, kept.count], [{ subscription: 'bill' }, 'done', 5]);
    const missing = await fetch(`http://127.0.0.1:${port}/api/v1/replays`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ selector: 'billing:*', from: { last: 5 }, target: { subscription: 'nope' } }),
    });
    assert.equal(missing.status, 404);

    const more = await pub.publishMany(INGEST_EXCHANGE, makeEvents(40), 40);
    assert.ok(more.every(Boolean));
    const live = await drain(c, (g) => g.length >= 10);
    assert.ok((live[0]?.offset as bigint) > (got[got.length - 1]?.offset as bigint));
    const acked = live[live.length - 1]?.offset as bigint;
    await pub.close();
    await hub.stop();
    assert.equal(await c.ended, 'hub stopping');

    hub = await start();
    const view = await hub.subscriptions()?.get('bill');
    assert.equal(view?.ackedOffset, acked);
    assert.equal(view?.state, 'sleeping');
    assert.equal(view?.lagEvents, 0);
  });
});
