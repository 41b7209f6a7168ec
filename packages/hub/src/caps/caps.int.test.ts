import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GRPC_ERROR_CODE_KEY, PROTO_LOADER_OPTIONS, PROTO_PATH } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost, waitFor } from '@herald/testing';
import { openSse } from '../api/subscriptions-test-kit.ts';
import { normalizeConfig } from '../config/index.ts';
import { createHub, type Hub } from '../hub.ts';

interface HeraldClient extends grpc.Client {
  subscribe(): grpc.ClientDuplexStream<object, { opened?: unknown }>;
}

// Every cap of the hub, set small through its environment variable, on a hub in process (router
// mode, PostgreSQL, RabbitMQ): the one past the cap is refused with 429 LIMIT_EXCEEDED (gRPC
// RESOURCE_EXHAUSTED) naming the setting, and a slot freed lets the next one in.
describe('caps (HERALD_MAX_*) on a hub in process', { timeout: 90_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: Hub;
  let base: string;
  let client: HeraldClient;

  const call = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, signal?: AbortSignal) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: text ? JSON.parse(text) : undefined };
  };

  /** The refusal every cap answers: 429, a problem document with LIMIT_EXCEEDED, naming the setting. */
  const assertRefused = (r: Awaited<ReturnType<typeof call>>, setting: string, max: number) => {
    assert.equal(r.status, 429, JSON.stringify(r.body));
    assert.match(r.type, /application\/problem\+json/);
    assert.equal(r.body.code, 'LIMIT_EXCEEDED');
    assert.equal(r.body.title, 'Too Many Requests');
    assert.match(r.body.detail, new RegExp(`at most ${max} at once \\(${setting}\\)`));
  };

  /** A raw Subscribe stream: `opened` resolves on the hub's opened message, `status` when it ends. */
  const openStream = (name: string, selector: string[]) => {
    const c = client.subscribe();
    const opened = new Promise<void>((resolve) => c.on('data', (m) => m.opened && resolve()));
    const status = new Promise<grpc.StatusObject>((resolve) => c.on('status', resolve));
    c.on('error', () => undefined);
    c.write({ open: { name, selector, start: { earliest: true }, maxInFlight: 10 } });
    return { call: c, opened, status };
  };

  before(async () => {
    [vhost, db] = await Promise.all([createTestVhost('caps'), createTestDatabase('caps')]);
    const config = normalizeConfig(
      { amqpUrl: vhost.url, databaseUrl: db.url, httpPort: 0, grpcPort: 0, logLevel: 'silent' },
      {
        HERALD_MAX_PAUSES: '2',
        HERALD_MAX_SUBSCRIPTIONS: '2',
        HERALD_MAX_REPLAYS: '1',
        HERALD_MAX_SSE_STREAMS: '1',
        HERALD_MAX_LONG_POLLS: '1',
        HERALD_MAX_GRPC_STREAMS: '1',
      },
    );
    hub = createHub(config);
    await hub.start();
    base = `http://127.0.0.1:${(hub.address() as { port: number }).port}`;
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const Herald = grpc.loadPackageDefinition(def).herald as never as { v1: { Herald: grpc.ServiceClientConstructor } };
    client = new Herald.v1.Herald(
      `127.0.0.1:${(hub.grpcAddress() as { port: number }).port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as HeraldClient;
  });
  after(async () => {
    client?.close();
    await hub?.stop();
    await vhost?.delete();
    await db?.drop();
  });

  test('HERALD_MAX_PAUSES: the third active pause is 429; a resumed one frees its slot', async () => {
    const a = await call('POST', '/api/v1/pauses', { selector: 'capped:one', ttl: 60 });
    const b = await call('POST', '/api/v1/pauses', { selector: 'capped:two', ttl: 60 });
    assert.deepEqual([a.status, b.status], [201, 201]);
    assertRefused(await call('POST', '/api/v1/pauses', { selector: 'capped:three', ttl: 60 }), 'HERALD_MAX_PAUSES', 2);
    // A bad request is still 400 at the cap.
    assert.equal((await call('POST', '/api/v1/pauses', { selector: 'capped' })).status, 400);
    assert.equal((await call('DELETE', `/api/v1/pauses/${a.body.id}`)).status, 200);
    const c = await call('POST', '/api/v1/pauses', { selector: 'capped:three', ttl: 60 });
    assert.equal(c.status, 201);
    for (const id of [b.body.id, c.body.id]) assert.equal((await call('DELETE', `/api/v1/pauses/${id}`)).status, 200);
  });

  test('HERALD_MAX_SUBSCRIPTIONS: the third is 429 by REST and RESOURCE_EXHAUSTED by a gRPC open; an existing one still answers; a delete frees a slot', async () => {
    for (const name of ['sub-a', 'sub-b'])
      assert.equal((await call('POST', '/api/v1/subscriptions', { name, selector: 'caps:*', start: 'earliest' })).status, 201);
    assertRefused(await call('POST', '/api/v1/subscriptions', { name: 'sub-c', selector: 'caps:*' }), 'HERALD_MAX_SUBSCRIPTIONS', 2);
    assert.equal((await call('POST', '/api/v1/subscriptions', { name: 'sub-a', selector: 'caps:*' })).status, 200, 'the same again');
    const refused = await openStream('sub-c', ['caps:*']).status;
    assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED, `${grpc.status[refused.code]}: ${refused.details}`);
    assert.deepEqual(refused.metadata.get(GRPC_ERROR_CODE_KEY), ['LIMIT_EXCEEDED']);
    assert.match(refused.details, /HERALD_MAX_SUBSCRIPTIONS/);
    assert.equal((await call('GET', '/api/v1/subscriptions')).body.items.length, 2, 'nothing was created');
    assert.equal((await call('DELETE', '/api/v1/subscriptions/sub-b')).status, 204);
    assert.equal((await call('POST', '/api/v1/subscriptions', { name: 'sub-c', selector: 'caps:*', start: 'earliest' })).status, 201);
  });

  test('HERALD_MAX_LONG_POLLS: a second waiting pull is 429 (a pull with wait=0 is not counted); the first ending frees its slot', async () => {
    const ac = new AbortController();
    const first = call('GET', '/api/v1/subscriptions/sub-a/events?wait=25', undefined, ac.signal).catch((err: Error) => err);
    // A pull marks its subscription active: then it holds its slot.
    await waitFor(
      'the first pull waits',
      async () => (await call('GET', '/api/v1/subscriptions/sub-a')).body.state === 'active',
      10_000,
      20,
    );
    assertRefused(await call('GET', '/api/v1/subscriptions/sub-c/events?wait=5'), 'HERALD_MAX_LONG_POLLS', 1);
    assert.equal((await call('GET', '/api/v1/subscriptions/sub-c/events?wait=0')).status, 200);
    ac.abort();
    assert.ok((await first) instanceof Error, 'the first pull was cut by its client');
    await waitFor(
      'a waiting pull is served again',
      async () => (await call('GET', '/api/v1/subscriptions/sub-c/events?wait=0.2')).status === 200,
      10_000,
      20,
    );
  });

  test('HERALD_MAX_SSE_STREAMS: a second stream is 429; the first closing frees its slot', async () => {
    const first = await openSse(`${base}/api/v1/subscriptions/sub-a/stream`);
    assert.equal(first.status, 200);
    await waitFor('the first stream is active', () => first.comments.includes('active'), 10_000, 10);
    const second = await call('GET', '/api/v1/subscriptions/sub-c/stream');
    assertRefused(second, 'HERALD_MAX_SSE_STREAMS', 1);
    await first.close();
    let next: Awaited<ReturnType<typeof openSse>> | undefined;
    await waitFor(
      'a stream is served again',
      async () => {
        const s = await openSse(`${base}/api/v1/subscriptions/sub-c/stream`);
        if (s.status === 200) next = s;
        else await s.close();
        return s.status === 200;
      },
      10_000,
      20,
    );
    await next?.close();
  });

  test('HERALD_MAX_GRPC_STREAMS: a second Subscribe stream is RESOURCE_EXHAUSTED; the first ending frees its slot', async () => {
    const first = openStream('sub-a', ['caps:*']);
    await first.opened;
    const refused = await openStream('sub-c', ['caps:*']).status;
    assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.deepEqual(refused.metadata.get(GRPC_ERROR_CODE_KEY), ['LIMIT_EXCEEDED']);
    assert.match(refused.details, /at most 1 at once \(HERALD_MAX_GRPC_STREAMS\)/);
    first.call.end();
    assert.equal((await first.status).code, grpc.status.OK);
    await waitFor(
      'a stream is served again',
      async () => {
        const s = openStream('sub-c', ['caps:*']);
        const got = await Promise.race([s.opened.then(() => 'opened' as const), s.status]);
        if (got !== 'opened') return false;
        s.call.end();
        await s.status;
        return true;
      },
      10_000,
      50,
    );
  });

  test('HERALD_MAX_REPLAYS: a replay into a subscription holds its slot while it runs; the next, of either target, is 429; a cancel frees it', async () => {
    for (let i = 0; i < 5; i++)
      assert.equal((await call('POST', '/api/v1/events', { sender: 'caps', type: 'tick', data: { i } })).status, 202);
    let head = '0';
    await waitFor('the events are stored', async () => {
      head = (await call('GET', '/api/v1/subscriptions/sub-a')).body.headOffset;
      return Number(head) >= 5;
    });
    // Only what a subscription was given is replayed into it: acknowledge everything first.
    assert.equal((await call('POST', '/api/v1/subscriptions/sub-a/ack', { offset: head })).status, 204);
    const running = await call('POST', '/api/v1/replays', { selector: 'caps:*', from: { offset: 1 }, target: { subscription: 'sub-a' } });
    assert.equal(running.status, 202);
    assert.equal(running.body.status, 'running', 'nobody pulls sub-a: the replay waits for its consumer');
    assertRefused(await call('POST', '/api/v1/replays', { selector: 'caps:*', from: { last: 1 } }), 'HERALD_MAX_REPLAYS', 1);
    assertRefused(
      await call('POST', '/api/v1/replays', { selector: 'caps:*', from: { last: 1 }, target: { subscription: 'sub-c' } }),
      'HERALD_MAX_REPLAYS',
      1,
    );
    assert.equal((await call('POST', '/api/v1/replays', { selector: 'caps:*', from: { nope: 1 } })).status, 400, 'a bad request is 400');
    const cancelled = await call('DELETE', `/api/v1/replays/${running.body.id}`);
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.status, 'cancelled');
    const next = await call('POST', '/api/v1/replays', { selector: 'caps:*', from: { last: 2 } });
    assert.equal(next.status, 202);
    await waitFor('the flow replay is done', async () => (await call('GET', `/api/v1/replays/${next.body.id}`)).body.status === 'done');
    assert.equal((await call('GET', `/api/v1/replays/${next.body.id}`)).body.count, 2);
    // Its slot is free again once it finished.
    const after = await call('POST', '/api/v1/replays', { selector: 'caps:*', from: { last: 1 } });
    assert.equal(after.status, 202);
  });
});
