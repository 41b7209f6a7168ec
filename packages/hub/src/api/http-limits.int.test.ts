// The HTTP server's own limits through the API factory, listening on a port, with a real
// subscription manager on PostgreSQL and RabbitMQ: every name a route carries fits the path
// (a subscription name of 128 characters, the longest there is, can be created, read, pulled and
// deleted), and the Fastify timeouts are the configured ones.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LIMITS } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost } from '@herald/testing';
import type { FastifyInstance } from 'fastify';
import { createDispatcher, type Dispatcher } from '../dispatcher/index.ts';
import { createForward, events } from '../dispatcher/test-kit.ts';
import { openStore, type SqlStore } from '../store/index.ts';
import { createSubscriptionManager } from '../subscriptions/index.ts';
import type { SubscriptionManager } from '../subscriptions/types.ts';
import { createApi } from './index.ts';
import { subscriptionsRoutes } from './subscriptions-routes.ts';

describe('HTTP limits: path lengths and timeouts', { timeout: 80_000 }, () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let store: SqlStore;
  let fwd: Awaited<ReturnType<typeof createForward>>;
  let dispatcher: Dispatcher;
  let manager: SubscriptionManager;
  let app: FastifyInstance;
  let base: string;

  const call = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => {
    const res = await fetch(base + path, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  before(async () => {
    [db, vhost] = await Promise.all([createTestDatabase('httplimits'), createTestVhost('httplimits')]);
    store = await openStore({ url: db.url });
    await store.migrate();
    await store.acquireWriterLease();
    fwd = await createForward(vhost.url);
    dispatcher = createDispatcher({ store, forward: fwd.forward });
    await dispatcher.start();
    manager = createSubscriptionManager({ store, sql: store.sql, amqpUrl: vhost.url, flushMs: 50 });
    await manager.start();
    app = await createApi({
      store,
      ready: () => true,
      publish: async () => {},
      config: { maxEventBytes: 1024 * 1024, httpRequestTimeout: 7, httpIdleTimeout: 0, httpKeepAliveTimeout: 9 },
      extraRoutes: (a) => subscriptionsRoutes(a, { manager: () => manager, mode: 'router' }),
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  after(async () => {
    await app?.close();
    await manager?.stop();
    await dispatcher?.stop();
    await fwd?.close();
    await store?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('a subscription name of 101 to 128 characters: create, get, pull, delete (no 414)', async () => {
    const { stored } = await store.append(events([['names', 'long']]));
    await dispatcher.dispatch(stored);
    const longest = LIMITS.subscriptionNameChars.value;
    assert.equal(longest, 128);
    for (const length of [100, 101, longest]) {
      const name = `n${'x'.repeat(length - 2)}.`.slice(0, length);
      assert.equal(name.length, length);
      const created = await call('POST', '/api/v1/subscriptions', { name, selector: 'names:*', start: 'earliest' });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const got = await call('GET', `/api/v1/subscriptions/${name}`);
      assert.equal(got.status, 200, `GET of a ${length}-character name: ${JSON.stringify(got.body)}`);
      assert.equal(got.body.name, name);
      const pulled = await call('GET', `/api/v1/subscriptions/${name}/events?wait=0`);
      assert.equal(pulled.status, 200, JSON.stringify(pulled.body));
      assert.equal(pulled.body.events.length, 1);
      const deleted = await call('DELETE', `/api/v1/subscriptions/${name}`);
      assert.equal(deleted.status, 204, `DELETE of a ${length}-character name: ${JSON.stringify(deleted.body)}`);
      assert.equal((await call('GET', `/api/v1/subscriptions/${name}`)).status, 404);
    }
    // One past the longest name is the route's own answer, not a 414 from the router.
    const tooLong = await call('GET', `/api/v1/subscriptions/${'y'.repeat(longest + 1)}`);
    assert.notEqual(tooLong.status, 414);
    assert.ok(tooLong.status === 400 || tooLong.status === 404, String(tooLong.status));
  });

  test('the Fastify timeouts are the configured ones (seconds to ms; 0 = none)', () => {
    assert.equal(app.server.requestTimeout, 7000);
    assert.equal(app.server.keepAliveTimeout, 9000);
    assert.equal(app.server.timeout, 0);
  });
});
