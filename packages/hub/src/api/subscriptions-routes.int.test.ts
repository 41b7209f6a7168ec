import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost, waitFor } from '@herald/testing';
import type { FastifyInstance } from 'fastify';
import { createDispatcher, type Dispatcher } from '../dispatcher/index.ts';
import { createForward, events } from '../dispatcher/test-kit.ts';
import { openStore, type SqlStore } from '../store/index.ts';
import { createSubscriptionManager } from '../subscriptions/index.ts';
import type { SubscriptionManager } from '../subscriptions/types.ts';
import { createApi } from './index.ts';
import { replaysRoutes } from './replays-routes.ts';
import { subscriptionsRoutes } from './subscriptions-routes.ts';
import { openSse } from './subscriptions-test-kit.ts';

// The subscription routes through the API factory, listening on a port, with a real manager on
// PostgreSQL and RabbitMQ and a real dispatcher feeding herald.events (so the receivers get live events).
describe('REST /api/v1/subscriptions', { timeout: 80_000 }, () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let store: SqlStore;
  let fwd: Awaited<ReturnType<typeof createForward>>;
  let dispatcher: Dispatcher;
  let manager: SubscriptionManager;
  /** What the routes see: undefined as on a standby hub; `mode` as the hub's HERALD_MODE. */
  let serving: SubscriptionManager | undefined;
  let mode = 'router';
  let app: FastifyInstance;
  let base: string;

  const call = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => {
    const res = await fetch(base + path, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const text = await res.text();
    return { status: res.status, type: String(res.headers.get('content-type')), text, body: text ? JSON.parse(text) : undefined };
  };
  /** Stores and dispatches events, as ingest would. */
  const publish = async (spec: [string, string][]) => {
    const { stored } = await store.append(events(spec));
    await dispatcher.dispatch(stored);
    return stored.map((e) => e.offset);
  };

  before(async () => {
    [db, vhost] = await Promise.all([createTestDatabase('subapi'), createTestVhost('subapi')]);
    store = await openStore({ url: db.url });
    await store.migrate();
    await store.acquireWriterLease();
    fwd = await createForward(vhost.url);
    dispatcher = createDispatcher({ store, forward: fwd.forward, limits: { maxTtlMs: 3600_000 } });
    await dispatcher.start();
    manager = createSubscriptionManager({ store, sql: store.sql, amqpUrl: vhost.url, flushMs: 50 });
    await manager.start();
    serving = manager;
    app = await createApi({
      store,
      ready: () => true,
      publish: async () => {},
      extraRoutes: (a) => {
        subscriptionsRoutes(a, {
          manager: () => serving,
          get mode() {
            return mode;
          },
          heartbeatMs: 300,
        });
        replaysRoutes(a, { dispatcher: () => dispatcher, mode: 'router', subscriptions: () => manager, store });
      },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address() as { port: number };
    base = `http://127.0.0.1:${addr.port}`;
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

  test('create (201, 200 when identical, 409 on another selector), get, list, delete (204, then 404)', async () => {
    await publish([
      ['billing', 'invoice.paid'],
      ['shop', 'order.placed'],
      ['billing', 'invoice.void'],
    ]);
    const created = await call('POST', '/api/v1/subscriptions', { name: 'ledger', selector: 'billing:*', start: 'earliest' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const v = created.body;
    assert.deepEqual(
      Object.keys(v).sort(),
      ['ackedOffset', 'consumer', 'createdAt', 'headOffset', 'lagEvents', 'name', 'queue', 'selector', 'state', 'lagSeconds'].sort(),
    );
    assert.equal(v.name, 'ledger');
    assert.deepEqual(v.selector, ['billing:*']);
    assert.equal(v.state, 'sleeping');
    assert.equal(v.ackedOffset, '0');
    assert.equal(v.headOffset, '3');
    assert.equal(v.lagEvents, 2);
    assert.ok(v.lagSeconds >= 0);
    assert.equal(v.consumer, null);
    assert.match(v.queue, /^herald\.sub\./);
    assert.ok(Math.abs(Date.parse(v.createdAt) - Date.now()) < 60_000);

    const again = await call('POST', '/api/v1/subscriptions', { name: 'ledger', selector: ['billing:*'], start: 'new' });
    assert.equal(again.status, 200);
    assert.equal(again.body.ackedOffset, '0', 'an existing subscription keeps its offset');
    const conflict = await call('POST', '/api/v1/subscriptions', { name: 'ledger', selector: 'shop:*' });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.code, 'CONFLICT');
    assert.match(conflict.type, /application\/problem\+json/);

    const fromNew = await call('POST', '/api/v1/subscriptions', { name: 'shop-new', selector: 'shop:*' });
    assert.equal(fromNew.status, 201);
    assert.equal(fromNew.body.ackedOffset, '3', 'start new: after the head');
    const fromOffset = await call('POST', '/api/v1/subscriptions', { name: 'from-2', selector: '*:*', start: { offset: '2' } });
    assert.equal(fromOffset.body.ackedOffset, '1');
    assert.equal(fromOffset.body.lagEvents, 2);
    const fromLast = await call('POST', '/api/v1/subscriptions', { name: 'last-1', selector: 'billing:*', start: { last: 1 } });
    assert.equal(fromLast.body.ackedOffset, '2');

    assert.equal((await call('GET', '/api/v1/subscriptions/ledger')).body.lagEvents, 2);
    const list = await call('GET', '/api/v1/subscriptions');
    assert.deepEqual(
      list.body.items.map((s: { name: string }) => s.name),
      ['from-2', 'last-1', 'ledger', 'shop-new'],
    );
    assert.equal((await call('GET', '/api/v1/subscriptions/missing')).status, 404);
    for (const name of ['shop-new', 'from-2', 'last-1']) {
      const deleted = await call('DELETE', `/api/v1/subscriptions/${name}`);
      assert.equal(deleted.status, 204);
      assert.equal(deleted.text, '', '204 has no body');
    }
    const gone = await call('DELETE', '/api/v1/subscriptions/shop-new');
    assert.equal(gone.status, 404);
    assert.equal(gone.body.code, 'NOT_FOUND');
    assert.equal((await call('GET', '/api/v1/subscriptions/shop-new')).status, 404);
  });

  test('bad requests are 400 problem documents naming the field; unknown names 404', async () => {
    const cases: [unknown, string][] = [
      [{ selector: 'billing:*' }, 'name'],
      [{ name: 'bad name', selector: 'billing:*' }, 'name'],
      [{ name: 'x'.repeat(129), selector: 'billing:*' }, 'name'],
      [{ name: 'x' }, 'selector'],
      [{ name: 'x', selector: 'billing' }, 'selector'],
      [{ name: 'x', selector: [] }, 'selector'],
      [{ name: 'x', selector: 'billing:*', colour: 'red' }, 'colour'],
      [{ name: 'x', selector: 'billing:*', start: 'tomorrow' }, 'start'],
      [{ name: 'x', selector: 'billing:*', start: { offset: -1 } }, 'start'],
      [{ name: 'x', selector: 'billing:*', start: { time: 'yesterday' } }, 'start.time'],
      [{ name: 'x', selector: 'billing:*', start: { last: 0 } }, 'start'],
    ];
    for (const [body, parameter] of cases) {
      const r = await call('POST', '/api/v1/subscriptions', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.type, /application\/problem\+json/);
      assert.ok(
        r.body.parameter === parameter || r.body.parameter?.startsWith(`${parameter}.`) || r.body.parameter?.startsWith(`${parameter}/`),
        `${JSON.stringify(body)} names ${parameter}: ${JSON.stringify(r.body)}`,
      );
    }
    assert.equal((await call('GET', '/api/v1/subscriptions/x')).status, 404, 'nothing was created by a bad request');
    const pullBad: [string, string][] = [
      ['max=0', 'max'],
      ['max=1001', 'max'],
      ['wait=-1', 'wait'],
      ['wait=31', 'wait'],
      ['colour=red', 'colour'],
    ];
    for (const [q, parameter] of pullBad) {
      const r = await call('GET', `/api/v1/subscriptions/ledger/events?${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(r.body.parameter, parameter, q);
    }
    for (const [body, parameter] of [
      [{}, 'offset'],
      [{ offset: -1 }, 'offset'],
      [{ offset: '1x' }, 'offset'],
      [{ offset: 999_999 }, 'offset'],
    ] as const) {
      const r = await call('POST', '/api/v1/subscriptions/ledger/ack', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.parameter, parameter, JSON.stringify(r.body));
    }
    assert.equal((await call('GET', '/api/v1/subscriptions/missing/events?wait=0')).status, 404);
    assert.equal((await call('POST', '/api/v1/subscriptions/missing/ack', { offset: 1 })).status, 404);
    assert.equal((await call('GET', '/api/v1/subscriptions/missing/stream')).status, 404);
    const lastId = await fetch(`${base}/api/v1/subscriptions/ledger/stream`, { headers: { 'last-event-id': 'abc' } });
    assert.equal(lastId.status, 400);
    assert.equal(((await lastId.json()) as { parameter: string }).parameter, 'Last-Event-ID');
    const aboveHead = await fetch(`${base}/api/v1/subscriptions/ledger/stream`, { headers: { 'last-event-id': '999999' } });
    assert.equal(aboveHead.status, 400, 'a Last-Event-ID above the head of the log');
    assert.equal(((await aboveHead.json()) as { parameter: string }).parameter, 'Last-Event-ID');
  });

  test('pull: events after the acknowledged offset, again until acked; long poll wakes on a live event; a gone client ends its wait', async () => {
    const first = await call('GET', '/api/v1/subscriptions/ledger/events?max=10&wait=0');
    assert.equal(first.status, 200);
    assert.deepEqual(
      first.body.events.map((e: { offset: string; type: string }) => [e.offset, e.type]),
      [
        ['1', 'invoice.paid'],
        ['3', 'invoice.void'],
      ],
    );
    assert.equal(typeof first.body.events[0].data.n, 'number');
    assert.equal((await call('GET', '/api/v1/subscriptions/ledger')).body.consumer, 'http');
    const againUnacked = await call('GET', '/api/v1/subscriptions/ledger/events?max=1&wait=0');
    assert.deepEqual(
      againUnacked.body.events.map((e: { offset: string }) => e.offset),
      ['1'],
    );
    assert.equal((await call('POST', '/api/v1/subscriptions/ledger/ack', { offset: 1 })).status, 204);
    assert.equal((await call('POST', '/api/v1/subscriptions/ledger/ack', { offset: '3' })).status, 204);
    assert.equal((await call('GET', '/api/v1/subscriptions/ledger')).body.ackedOffset, '3');

    const t0 = Date.now();
    const waiting = call('GET', '/api/v1/subscriptions/ledger/events?wait=20');
    await sleep(300);
    const [offset] = await publish([['billing', 'invoice.paid']]);
    const woke = await waiting;
    assert.deepEqual(
      woke.body.events.map((e: { offset: string }) => e.offset),
      [String(offset)],
    );
    assert.ok(Date.now() - t0 < 5000, `the long poll answered ${Date.now() - t0} ms after it started`);
    await call('POST', '/api/v1/subscriptions/ledger/ack', { offset: String(offset) });

    // A client that gives up: its pull ends, so the next one (pulls of a subscription run one at a time) answers at once.
    const ac = new AbortController();
    const gone = fetch(`${base}/api/v1/subscriptions/ledger/events?wait=30`, { signal: ac.signal }).catch(() => 'aborted');
    await sleep(300);
    ac.abort();
    assert.equal(await gone, 'aborted');
    const t1 = Date.now();
    const next = await call('GET', '/api/v1/subscriptions/ledger/events?wait=0');
    assert.equal(next.status, 200);
    assert.deepEqual(next.body.events, []);
    assert.ok(Date.now() - t1 < 2000, `the next pull answered after ${Date.now() - t1} ms`);

    // wait is in seconds, fractions allowed; without max and wait a pull takes up to 100 events and waits up to 5 s.
    const t2 = Date.now();
    assert.deepEqual((await call('GET', '/api/v1/subscriptions/ledger/events?wait=0.5')).body.events, []);
    const half = Date.now() - t2;
    assert.ok(half >= 400 && half < 3000, `wait=0.5 answered after ${half} ms`);
    const t3 = Date.now();
    assert.deepEqual((await call('GET', '/api/v1/subscriptions/ledger/events')).body.events, []);
    const dflt = Date.now() - t3;
    assert.ok(dflt >= 4500 && dflt < 8000, `the default wait answered after ${dflt} ms`);
    const many = await publish(Array.from({ length: 150 }, () => ['billing', 'invoice.paid'] as [string, string]));
    const page = await call('GET', '/api/v1/subscriptions/ledger/events');
    assert.deepEqual(
      page.body.events.map((e: { offset: string }) => e.offset),
      many.slice(0, 100).map(String),
      'default max 100',
    );
    assert.equal((await call('POST', '/api/v1/subscriptions/ledger/ack', { offset: String(many.at(-1)) })).status, 204);
  });

  test('SSE: live events in order, acknowledged by POST ack or Last-Event-ID only; standby; pull is 409 meanwhile', async () => {
    assert.equal((await call('POST', '/api/v1/subscriptions', { name: 'tail', selector: 'shop:*' })).status, 201);
    const sse = await openSse(`${base}/api/v1/subscriptions/tail/stream`);
    assert.equal(sse.status, 200);
    await waitFor('the stream is active', () => sse.comments.includes('active'), 10_000, 10);
    const view = (await call('GET', '/api/v1/subscriptions/tail')).body;
    assert.equal(view.state, 'active');
    assert.match(view.consumer, /^sse 127\.0\.0\.1:\d+$/);
    const busy = await call('GET', '/api/v1/subscriptions/tail/events?wait=0');
    assert.equal(busy.status, 409, 'a pull while a stream holds the subscription');

    // A second stream waits as standby.
    const standby = await openSse(`${base}/api/v1/subscriptions/tail/stream`);
    await waitFor('the standby comment', () => standby.comments.includes('waiting as standby'), 10_000, 10);

    const offsets: bigint[] = [];
    for (let i = 0; i < 5; i++)
      offsets.push(
        ...(await publish(Array.from({ length: 20 }, (_, j) => ['shop', j % 2 ? 'order.placed' : 'order.paid'] as [string, string]))),
      );
    await publish([['billing', 'invoice.paid']]);
    await sse.waitFor(100);
    assert.deepEqual(
      sse.events.map((e) => e.id),
      offsets.map(String),
      'every event, in offset order, once',
    );
    assert.deepEqual(
      sse.events.map((e) => e.data.offset),
      offsets.map(String),
    );
    assert.equal(sse.events[1]?.event, 'order.placed');
    // Written is not seen: the stream acknowledges nothing by itself; the client acks over HTTP.
    assert.notEqual((await call('GET', '/api/v1/subscriptions/tail')).body.ackedOffset, String(offsets.at(-1)));
    assert.equal((await call('POST', '/api/v1/subscriptions/tail/ack', { offset: String(offsets.at(-1)) })).status, 204);
    assert.equal((await call('GET', '/api/v1/subscriptions/tail')).body.ackedOffset, String(offsets.at(-1)));
    await waitFor('a heartbeat', () => sse.comments.includes('heartbeat'), 5000, 10);

    // The first stream goes: the standby takes over and gets only what comes next.
    await sse.close();
    await waitFor('the standby took over', () => standby.comments.includes('active'), 10_000, 10);
    const more = await publish([
      ['shop', 'order.paid'],
      ['shop', 'order.paid'],
    ]);
    await standby.waitFor(2);
    assert.deepEqual(
      standby.events.map((e) => e.id),
      more.map(String),
    );
    await standby.close();

    // Last-Event-ID acknowledges what the client has and resumes after it. Here: a subscription
    // behind what the client has (started at an earlier offset), and the client says it has
    // everything up to `more[0]`.
    await call('POST', '/api/v1/subscriptions', { name: 'tail2', selector: 'shop:*', start: { offset: String(offsets[0]) } });
    const resumed = await openSse(`${base}/api/v1/subscriptions/tail2/stream`, { 'last-event-id': String(more[0]) });
    await resumed.waitFor(1);
    await sleep(300);
    assert.deepEqual(
      resumed.events.map((e) => e.id),
      [String(more[1])],
      'resumes after Last-Event-ID',
    );
    const more2 = await publish([['shop', 'order.paid']]);
    await resumed.waitFor(2);
    assert.equal(resumed.events[1]?.id, String(more2[0]));
    await resumed.close();
    await waitFor(
      'the subscription sleeps after the client went',
      async () => (await call('GET', '/api/v1/subscriptions/tail2')).body.state === 'sleeping',
      10_000,
    );
    assert.equal(
      (await call('GET', '/api/v1/subscriptions/tail2')).body.ackedOffset,
      String(more[0]),
      'acknowledged up to the Last-Event-ID, not what was written after it',
    );

    // Deleting a subscription ends its stream.
    const doomed = await openSse(`${base}/api/v1/subscriptions/tail2/stream`);
    await waitFor('active', () => doomed.comments.includes('active'), 10_000, 10);
    assert.equal((await call('DELETE', '/api/v1/subscriptions/tail2')).status, 204);
    await doomed.done;
    assert.ok(
      doomed.comments.some((c) => c.startsWith('ended: subscription deleted')),
      doomed.comments.join('|'),
    );
  });

  test('a replay into a subscription: pull and SSE show the replayed events marked, SSE without an id', async () => {
    const name = 'replayed';
    assert.equal((await call('POST', '/api/v1/subscriptions', { name, selector: 'audit:*' })).status, 201);
    const offsets = await publish([
      ['audit', 'login'],
      ['audit', 'logout'],
      ['audit', 'login'],
    ]);
    const pulled = await call('GET', `/api/v1/subscriptions/${name}/events?wait=5`);
    assert.equal(pulled.body.events.length, 3);
    assert.equal((await call('POST', `/api/v1/subscriptions/${name}/ack`, { offset: String(offsets[2]) })).status, 204);
    const r = await call('POST', '/api/v1/replays', {
      selector: 'audit:login',
      from: { offset: String(offsets[0]) },
      target: { subscription: name },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.count, 2);
    // kept like a replay into the flow: pending until its consumer reads it
    const pending = await call('GET', `/api/v1/replays/${r.body.id}`);
    assert.equal(pending.status, 200, JSON.stringify(pending.body));
    assert.deepEqual(
      [pending.body.target, pending.body.status, pending.body.count, pending.body.selector, pending.body.from],
      [{ subscription: name }, 'pending', 0, ['audit:login'], { offset: Number(offsets[0]) }],
    );
    const again = await call('GET', `/api/v1/subscriptions/${name}/events?wait=5`);
    assert.deepEqual(
      again.body.events.map((e: { offset: string; replay?: string }) => [e.offset, e.replay]),
      [
        [String(offsets[0]), r.body.id],
        [String(offsets[2]), r.body.id],
      ],
    );
    const done = await call('GET', `/api/v1/replays/${r.body.id}`);
    assert.deepEqual([done.body.status, done.body.count, done.body.error], ['done', 2, null]);
    assert.ok(done.body.finishedAt);
    // The same through a stream: replayed events carry no id line (Last-Event-ID never goes back).
    const r2 = await call('POST', '/api/v1/replays', {
      selector: 'audit:logout',
      from: { offset: String(offsets[0]) },
      target: { subscription: name },
    });
    assert.equal(r2.body.count, 1);
    const sse = await openSse(`${base}/api/v1/subscriptions/${name}/stream`);
    const [live] = await publish([['audit', 'login']]);
    await sse.waitFor(2);
    assert.deepEqual(
      sse.events.map((e) => [e.id, e.data.offset, e.data.replay]),
      [
        [undefined, String(offsets[1]), r2.body.id],
        [String(live), String(live), undefined],
      ],
    );
    await sse.close();
  });

  test('SSE backpressure: a client that stops reading holds the stream back, then gets everything in order', async () => {
    assert.equal((await call('POST', '/api/v1/subscriptions', { name: 'slow', selector: 'bulk:*' })).status, 201);
    const sse = await openSse(`${base}/api/v1/subscriptions/slow/stream`, {}, true);
    await waitFor('attached', async () => (await call('GET', '/api/v1/subscriptions/slow')).body.state === 'active', 10_000);
    const pad = 'x'.repeat(1000);
    const offsets: bigint[] = [];
    const t1 = Date.now();
    for (let i = 0; i < 12; i++) {
      const batch = events(Array.from({ length: 1000 }, () => ['bulk', 'item.made'] as [string, string])).map((e) => ({
        ...e,
        data: Buffer.from(JSON.stringify({ pad })),
      }));
      const { stored } = await store.append(batch);
      await dispatcher.dispatch(stored);
      offsets.push(...stored.map((e) => e.offset));
    }
    console.log(`# stored and dispatched in ${Date.now() - t1} ms`);
    await sleep(1500); // the client does not read for a while
    const t0 = Date.now();
    sse.resume();
    await sse.waitFor(offsets.length, 30_000);
    const ms = Date.now() - t0;
    assert.deepEqual(
      sse.events.map((e) => e.id),
      offsets.map(String),
    );
    assert.equal((await call('POST', '/api/v1/subscriptions/slow/ack', { offset: String(offsets.at(-1)) })).status, 204);
    assert.equal((await call('GET', '/api/v1/subscriptions/slow')).body.ackedOffset, String(offsets.at(-1)));
    await sse.close();
    console.log(`# backpressure: ${offsets.length} events of 1 KB; the client did not read for 1.5 s, then got all in ${ms} ms`);
  });

  test('archive mode answers 409 naming router mode, no manager 503', async () => {
    serving = undefined;
    try {
      const none = await call('GET', '/api/v1/subscriptions');
      assert.equal(none.status, 503);
      assert.match(none.type, /application\/problem\+json/);
      mode = 'archive';
      const archive = await call('GET', '/api/v1/subscriptions/ledger');
      assert.equal(archive.status, 409);
      assert.match(archive.body.detail, /router mode/);
    } finally {
      serving = manager;
      mode = 'router';
    }
    assert.equal((await call('GET', '/api/v1/subscriptions/ledger')).status, 200);
  });

  test('the OpenAPI document lists the subscription routes', async () => {
    const doc = (await call('GET', '/openapi.json')).body as { paths: Record<string, Record<string, Record<string, unknown>>> };
    assert.ok(doc.paths['/api/v1/subscriptions']?.post);
    assert.ok(doc.paths['/api/v1/subscriptions']?.get);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}']?.get);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}']?.delete);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}/events']?.get);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}/ack']?.post);
    const stream = doc.paths['/api/v1/subscriptions/{name}/stream']?.get as {
      responses: Record<string, { content: Record<string, unknown> }>;
      parameters: { name: string; in: string }[];
    };
    assert.ok(stream.responses['200']?.content['text/event-stream']);
    assert.ok(stream.parameters.some((p) => p.in === 'header' && p.name === 'last-event-id'));
  });
});
