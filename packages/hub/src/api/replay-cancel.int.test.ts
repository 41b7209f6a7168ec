import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost, waitFor } from '@herald/testing';
import type { FastifyInstance } from 'fastify';
import { createDispatcher, type Dispatcher, type Forward } from '../dispatcher/index.ts';
import { createForward, createReceiver, events, type TestReceiver } from '../dispatcher/test-kit.ts';
import { openStore, type SqlStore } from '../store/index.ts';
import { createSubscriptionManager, type SubscriptionManager } from '../subscriptions/index.ts';
import { createApi } from './index.ts';
import { replaysRoutes } from './replays-routes.ts';
import { subscriptionsRoutes } from './subscriptions-routes.ts';

const TOTAL = 3000;
const CHUNK = 10;

// DELETE /api/v1/replays/{id} with a real dispatcher and subscription manager on PostgreSQL,
// forwarding to a real RabbitMQ vhost. The replay into the flow is long (3000 events in chunks of
// 10, one confirmed publish each), and its second chunk is held at a gate until the cancel is sent,
// so the cancel always lands while it runs.
describe('DELETE /api/v1/replays/{id}: cancel', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let store: SqlStore;
  let fwd: Awaited<ReturnType<typeof createForward>>;
  let rx: TestReceiver;
  let dispatcher: Dispatcher;
  let manager: SubscriptionManager;
  let app: FastifyInstance;
  /** Replay chunks given to forward, by replay id, and the gate the second chunk of each waits at. */
  const chunks = new Map<string, number>();
  let gate: { open: () => void; opened: Promise<void>; waiting: boolean } | undefined;

  const gated: Forward = async (evs, options) => {
    const id = options?.replay;
    if (id !== undefined) {
      const n = (chunks.get(id) ?? 0) + 1;
      chunks.set(id, n);
      if (n === 2 && gate) {
        gate.waiting = true;
        await gate.opened;
      }
    }
    return fwd.forward(evs, options);
  };

  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) => {
    const res = await app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }) });
    return { status: res.statusCode, type: String(res.headers['content-type']), body: res.body ? res.json() : undefined };
  };

  before(async () => {
    [db, vhost] = await Promise.all([createTestDatabase('replaycancel'), createTestVhost('replaycancel')]);
    store = await openStore({ url: db.url });
    await store.migrate();
    await store.acquireWriterLease();
    fwd = await createForward(vhost.url);
    rx = await createReceiver(vhost.url);
    dispatcher = createDispatcher({ store, forward: gated, chunkSize: CHUNK, limits: { maxTtlMs: 3600_000 } });
    manager = createSubscriptionManager({ store, sql: store.sql, amqpUrl: vhost.url, flushMs: 50 });
    await manager.start();
    app = await createApi({
      store,
      ready: () => true,
      publish: async () => {},
      extraRoutes: (a) => {
        replaysRoutes(a, { dispatcher: () => dispatcher, mode: 'router', subscriptions: () => manager, store });
        subscriptionsRoutes(a, { manager: () => manager, mode: 'router' });
      },
    });
    await app.ready();
  });
  after(async () => {
    gate?.open();
    await app?.close();
    await manager?.stop();
    await dispatcher?.stop();
    await rx?.close();
    await fwd?.close();
    await store?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('a running replay into the flow stops: cancelled, nothing of it is sent after the answer, the live events its pause held go out', async () => {
    const { stored } = await store.append(events(Array.from({ length: TOTAL }, () => ['bulk', 'item'] as [string, string])));
    await dispatcher.dispatch(stored);
    await rx.waitFor(TOTAL);
    let open = () => {};
    const opened = new Promise<void>((r) => (open = r));
    gate = { open, opened, waiting: false };

    const created = await call('POST', '/api/v1/replays', { selector: 'bulk:*', from: { offset: String(stored[0]?.offset) } });
    assert.equal(created.status, 202);
    const id = created.body.id as string;
    await waitFor('the second chunk waits at the gate', () => gate?.waiting === true, 10_000, 5);
    assert.equal((await call('GET', `/api/v1/replays/${id}`)).body.status, 'running');
    // A live event of the replay's selector, held by its pause. (Dispatch waits in the dispatcher's
    // queue behind the gated chunk, like the cancel: neither is awaited before the gate opens.)
    const { stored: live } = await store.append(events([['bulk', 'live']]));
    const liveDispatched = dispatcher.dispatch(live);
    const cancelling = call('DELETE', `/api/v1/replays/${id}`);
    gate.open();
    await liveDispatched;
    const cancelled = await cancelling;
    const sentAtAnswer = chunks.get(id) ?? 0;
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.status, 'cancelled');
    assert.ok(cancelled.body.finishedAt);
    const count = cancelled.body.count as number;
    assert.ok(count >= CHUNK && count < TOTAL, `cancelled after ${count} of ${TOTAL} events`);

    // A marker forwarded after the answer arrives after everything forwarded before it.
    const { stored: marker } = await store.append(events([['marker', 'after-cancel']]));
    await dispatcher.dispatch(marker);
    await waitFor('the marker arrives', () => rx.seen.some((s) => s.sender === 'marker'), 10_000, 5);
    const replayed = rx.seen.filter((s) => s.replay === id);
    assert.equal(replayed.length, count, 'what arrived is what the answer counted');
    assert.equal(chunks.get(id), sentAtAnswer, 'no chunk of it was forwarded after the answer');
    assert.ok(
      rx.seen.some((s) => s.offset === live[0]?.offset && s.replay === undefined),
      'the live event its pause held went out once the pause ended',
    );
    await dispatcher.idle();
    assert.equal(dispatcher.stats().replays, 0, 'it no longer counts against HERALD_MAX_REPLAYS');
    assert.equal(dispatcher.stats().holding, 0, 'its pause is released');
    assert.equal(rx.seen.filter((s) => s.replay === id).length, count, 'still nothing more of it');

    // Idempotent: a second DELETE answers it as it stands; GET says the same.
    const again = await call('DELETE', `/api/v1/replays/${id}`);
    assert.deepEqual([again.status, again.body.status, again.body.count], [200, 'cancelled', count]);
    assert.equal((await call('GET', `/api/v1/replays/${id}`)).body.status, 'cancelled');
  });

  test('a replay that finished is answered as it stands; an unknown id is 404', async () => {
    gate = undefined;
    const { stored } = await store.append(events([['small', 'one']]));
    await dispatcher.dispatch(stored);
    const r = await call('POST', '/api/v1/replays', { selector: 'small:*', from: { last: 1 } });
    await dispatcher.idle();
    const done = await call('DELETE', `/api/v1/replays/${r.body.id}`);
    assert.deepEqual([done.status, done.body.status, done.body.count], [200, 'done', 1]);
    const missing = await call('DELETE', '/api/v1/replays/018f0000-0000-7000-8000-000000000000');
    assert.equal(missing.status, 404);
    assert.match(missing.type, /application\/problem\+json/);
    assert.equal((await call('DELETE', '/api/v1/replays/not-a-uuid')).status, 404);
    const doc = (await call('GET', '/openapi.json')).body as {
      paths: Record<string, { delete?: { responses: Record<string, unknown> } }>;
    };
    const del = doc.paths['/api/v1/replays/{id}']?.delete;
    assert.ok(del?.responses['200'] && del.responses['404'], 'the OpenAPI document has DELETE /api/v1/replays/{id}');
  });

  test('a replay into a subscription stops: cancelled, no later pull gets its events', async () => {
    const { stored } = await store.append(events(Array.from({ length: 20 }, () => ['shop', 'order'] as [string, string])));
    await dispatcher.dispatch(stored);
    assert.equal((await call('POST', '/api/v1/subscriptions', { name: 'orders', selector: 'shop:*', start: 'earliest' })).status, 201);
    const first = await call('GET', '/api/v1/subscriptions/orders/events?max=1000&wait=0');
    assert.equal(first.body.events.length, 20);
    const head = first.body.events[19].offset as string;
    assert.equal((await call('POST', '/api/v1/subscriptions/orders/ack', { offset: head })).status, 204);

    const r = await call('POST', '/api/v1/replays', {
      selector: 'shop:*',
      from: { offset: String(stored[0]?.offset) },
      target: { subscription: 'orders' },
    });
    assert.equal(r.status, 202);
    assert.deepEqual([r.body.status, r.body.count], ['running', 20]);
    assert.equal(manager.activeReplays(), 1);
    const some = await call('GET', '/api/v1/subscriptions/orders/events?max=5&wait=0');
    assert.deepEqual(
      some.body.events.map((e: { replay?: string }) => e.replay),
      Array(5).fill(r.body.id),
    );

    const cancelled = await call('DELETE', `/api/v1/replays/${r.body.id}`);
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.status, 'cancelled');
    assert.equal(cancelled.body.count, 5);
    assert.deepEqual(cancelled.body.target, { subscription: 'orders' });
    assert.equal(manager.activeReplays(), 0, 'its slot is free');
    // The answer to the next pull is the positive signal: it comes, and holds nothing of the replay.
    const later = await call('GET', '/api/v1/subscriptions/orders/events?max=1000&wait=0');
    assert.equal(later.status, 200);
    assert.deepEqual(later.body.events, []);
    const { stored: next } = await store.append(events([['shop', 'order']]));
    await dispatcher.dispatch(next);
    const live = await call('GET', '/api/v1/subscriptions/orders/events?max=1000&wait=5');
    assert.deepEqual(
      live.body.events.map((e: { offset: string; replay?: string }) => [e.offset, e.replay]),
      [[String(next[0]?.offset), undefined]],
    );
    assert.equal((await call('GET', `/api/v1/replays/${r.body.id}`)).body.count, 5);
  });
});
