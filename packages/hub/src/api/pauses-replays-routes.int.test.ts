import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost } from '@herald/testing';
import type { FastifyInstance } from 'fastify';
import { createDispatcher, type Dispatcher } from '../dispatcher/index.ts';
import { createForward, createReceiver, events, type TestReceiver } from '../dispatcher/test-kit.ts';
import { openStore, type SqlStore } from '../store/index.ts';
import { createApi } from './index.ts';
import { pausesRoutes } from './pauses-routes.ts';
import { replaysRoutes } from './replays-routes.ts';

// The pause and replay routes through the API factory (schemas, problem documents) with a real
// dispatcher on PostgreSQL forwarding to a real RabbitMQ vhost; requests go through inject.
describe('REST /api/v1/pauses and /api/v1/replays', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let store: SqlStore;
  let fwd: Awaited<ReturnType<typeof createForward>>;
  let rx: TestReceiver;
  let dispatcher: Dispatcher | undefined;
  let mode = 'router';
  let app: FastifyInstance;

  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) => {
    const res = await app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }) });
    return { status: res.statusCode, type: String(res.headers['content-type']), body: res.body ? res.json() : undefined };
  };

  before(async () => {
    [db, vhost] = await Promise.all([createTestDatabase('pauseapi'), createTestVhost('pauseapi')]);
    store = await openStore({ url: db.url });
    await store.migrate();
    await store.acquireWriterLease();
    fwd = await createForward(vhost.url);
    rx = await createReceiver(vhost.url);
    dispatcher = createDispatcher({ store, forward: fwd.forward, limits: { maxTtlMs: 3600_000 } });
    const deps = { dispatcher: () => dispatcher, mode: 'router' };
    app = await createApi({
      store,
      ready: () => true,
      publish: async () => {},
      extraRoutes: (a) => {
        pausesRoutes(a, {
          dispatcher: () => deps.dispatcher(),
          get mode() {
            return mode;
          },
        });
        replaysRoutes(a, { dispatcher: () => deps.dispatcher(), mode: 'router' });
      },
    });
    await app.ready();
  });
  after(async () => {
    await app?.close();
    await dispatcher?.stop();
    await rx?.close();
    await fwd?.close();
    await store?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('create, get, list and resume a pause; a held event goes out on resume', async () => {
    const created = await call('POST', '/api/v1/pauses', { selector: 'billing:*', ttl: 60, reason: 'ledger' });
    assert.equal(created.status, 201);
    const p = created.body as { id: string; selector: string[]; reason: string; expiresAt: string; endedAt: null; held: number };
    assert.deepEqual(p.selector, ['billing:*']);
    assert.equal(p.reason, 'ledger');
    assert.equal(p.endedAt, null);
    assert.ok(Math.abs(Date.parse(p.expiresAt) - Date.now() - 60_000) < 5000);
    const { stored } = await store.append(events([['billing', 'invoice.paid']]));
    await dispatcher?.dispatch(stored);
    assert.equal((await call('GET', `/api/v1/pauses/${p.id}`)).body.held, 1);
    const list = await call('GET', '/api/v1/pauses');
    assert.deepEqual(
      (list.body.items as { id: string }[]).map((x) => x.id),
      [p.id],
    );
    assert.equal(rx.seen.length, 0);
    const resumed = await call('DELETE', `/api/v1/pauses/${p.id}`);
    assert.equal(resumed.status, 200);
    assert.ok(resumed.body.endedAt);
    assert.equal(resumed.body.held, 1);
    await rx.waitFor(1);
    assert.equal(rx.seen[0]?.offset, stored[0]?.offset);
  });

  test('bad requests are problem documents naming the parameter', async () => {
    const ttl = await call('POST', '/api/v1/pauses', { selector: 'billing:*', ttl: 7200 });
    assert.equal(ttl.status, 400);
    assert.match(ttl.type, /application\/problem\+json/);
    assert.equal(ttl.body.parameter, 'ttl');
    assert.match(ttl.body.detail, /at most 3600 s/);
    const sel = await call('POST', '/api/v1/pauses', { selector: 'billing' });
    assert.equal(sel.status, 400);
    assert.equal(sel.body.code, 'INVALID_SELECTOR');
    assert.equal(sel.body.parameter, 'selector');
    const extra = await call('POST', '/api/v1/pauses', { selector: 'billing:*', ttl: 5, color: 'red' });
    assert.equal(extra.status, 400);
    assert.equal(extra.body.parameter, 'color');
    assert.equal((await call('GET', '/api/v1/pauses/not-a-uuid')).status, 404);
    assert.equal((await call('DELETE', '/api/v1/pauses/018f0000-0000-7000-8000-000000000000')).status, 404);
    const target = await call('POST', '/api/v1/replays', { selector: 'billing:*', from: { last: 1 }, target: 'subscription' });
    assert.equal(target.status, 400);
    assert.equal(target.body.parameter, 'target');
    const from = await call('POST', '/api/v1/replays', { selector: 'billing:*', from: { yesterday: true } });
    assert.equal(from.status, 400);
    assert.equal((await call('GET', '/api/v1/replays/018f0000-0000-7000-8000-000000000000')).status, 404);
  });

  test('a replay is accepted (202), runs, and reports done with its count', async () => {
    const { stored } = await store.append(
      events([
        ['shop', 'a'],
        ['shop', 'b'],
        ['shop', 'a'],
      ]),
    );
    await dispatcher?.dispatch(stored);
    await rx.waitFor(4);
    const r = await call('POST', '/api/v1/replays', { selector: ['shop:a'], from: { offset: String(stored[0]?.offset) }, target: 'flow' });
    assert.equal(r.status, 202);
    assert.equal(r.body.status, 'pending');
    assert.deepEqual(r.body.from, { offset: Number(stored[0]?.offset) });
    await dispatcher?.idle();
    const done = await call('GET', `/api/v1/replays/${r.body.id}`);
    assert.equal(done.body.status, 'done');
    assert.equal(done.body.count, 2);
    await rx.waitFor(6);
    assert.deepEqual(
      rx.seen.slice(4).map((s) => [s.offset, s.replay]),
      [
        [stored[0]?.offset, r.body.id],
        [stored[2]?.offset, r.body.id],
      ],
    );
  });

  test('archive mode answers 409, a hub without a dispatcher 503; the OpenAPI document lists the routes', async () => {
    const d = dispatcher;
    dispatcher = undefined;
    try {
      assert.equal((await call('GET', '/api/v1/pauses')).status, 503);
      mode = 'archive';
      const r = await call('GET', '/api/v1/pauses');
      assert.equal(r.status, 409);
      assert.match(r.body.detail, /router mode/);
    } finally {
      mode = 'router';
      dispatcher = d;
    }
    const doc = (await call('GET', '/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    assert.ok(doc.paths['/api/v1/pauses']?.post);
    assert.ok(doc.paths['/api/v1/pauses/{id}']?.delete);
    assert.ok(doc.paths['/api/v1/replays']?.post);
    assert.ok(doc.paths['/api/v1/replays/{id}']?.get);
  });
});
