import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEvent, fromAmqp, type HeraldEvent, INGEST_EXCHANGE, toAmqp, wireTopology } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost } from '@herald/testing';
import amqp from 'amqplib';
import type { FastifyInstance } from 'fastify';
import { openStore, type SqlStore } from '../store/index.ts';
import { createApi } from './index.ts';

// The REST API against the real PostgreSQL store, publishing to a real RabbitMQ vhost with
// confirms, as the hub does; requests go through fastify's inject (the same routing, schemas and
// error handling as over a socket).
let db: TestDatabase;
let vhost: TestVhost;
let store: SqlStore;
let app: FastifyInstance;
let conn: amqp.ChannelModel;
let ch: amqp.ConfirmChannel;
let ready = true;
const seeded: HeraldEvent[] = [];

async function get(url: string) {
  const res = await app.inject({ method: 'GET', url });
  return { status: res.statusCode, type: String(res.headers['content-type']), body: res.json() as Record<string, unknown> };
}

before(async () => {
  db = await createTestDatabase('api');
  vhost = await createTestVhost('api');
  store = await openStore({ url: db.url });
  await store.migrate();
  await store.acquireWriterLease();
  conn = await amqp.connect(vhost.url, { noDelay: true });
  ch = await conn.createConfirmChannel();
  for (const e of wireTopology('router').exchanges) await ch.assertExchange(e.name, e.type, { durable: true });
  await ch.assertQueue('ingest-copy', { durable: true });
  await ch.bindQueue('ingest-copy', INGEST_EXCHANGE, '#');
  const base = Date.parse('2026-01-01T00:00:00Z');
  for (let i = 0; i < 25; i++) {
    seeded.push(
      createEvent({
        sender: i % 2 ? 'billing' : 'shipping',
        type: i % 3 ? 'invoice.paid' : 'parcel.sent',
        data: { i },
        time: base + i * 60_000,
      }),
    );
  }
  seeded.push(createEvent({ sender: 'blob', type: 'raw', data: Buffer.from([0, 1, 255]), time: base + 30 * 60_000 }));
  await store.append(seeded);
  app = await createApi({
    store,
    ready: () => ({ store: true, amqp: ready }),
    maxEventBytes: 1024,
    publish: async (event) => {
      const m = toAmqp(event);
      await new Promise<void>((resolve, reject) =>
        ch.publish(INGEST_EXCHANGE, m.routingKey, m.content, m.properties, (err) => (err ? reject(err) : resolve())),
      );
    },
  });
  await app.ready();
});

after(async () => {
  await app?.close();
  await conn?.close().catch(() => {});
  await store?.close();
  await vhost?.delete();
  await db?.drop();
});

describe('GET /api/v1/events', () => {
  test('by selector, ascending, with offsets as strings', async () => {
    const r = await get('/api/v1/events?selector=billing:invoice.paid,*:parcel.sent&limit=1000');
    assert.equal(r.status, 200);
    const events = r.body.events as { offset: string; sender: string; type: string; data: { i: number } }[];
    const expected = seeded.filter((e) => (e.sender === 'billing' && e.type === 'invoice.paid') || e.type === 'parcel.sent');
    assert.deepEqual(
      events.map((e) => e.data.i),
      expected.map((e) => JSON.parse(e.data.toString()).i),
    );
    assert.ok(events.every((e) => typeof e.offset === 'string'));
    assert.equal(r.body.next, null);
  });

  test('last N, since/until, and paging with next to the end', async () => {
    const last = await get('/api/v1/events?selector=billing:*&last=3');
    assert.deepEqual(
      (last.body.events as { data: { i: number } }[]).map((e) => e.data.i),
      [19, 21, 23],
    );
    const timed = await get('/api/v1/events?since=2026-01-01T00:05:00Z&until=2026-01-01T00:08:00Z');
    assert.deepEqual(
      (timed.body.events as { data: { i: number } }[]).map((e) => e.data.i),
      [5, 6, 7],
    );
    const seen: string[] = [];
    let url = '/api/v1/events?selector=*:*&limit=7';
    for (;;) {
      const page = await get(url);
      seen.push(...(page.body.events as { id: string }[]).map((e) => e.id));
      if (page.body.next === null) break;
      url = `/api/v1/events?selector=*:*&limit=7&after=${page.body.next}`;
    }
    assert.deepEqual(
      seen,
      seeded.map((e) => e.id),
    );
  });

  test('binary data comes as base64; one event by offset and by id', async () => {
    const blob = seeded[seeded.length - 1]!;
    const byId = await get(`/api/v1/events/by-id/${blob.id}`);
    assert.equal(byId.status, 200);
    assert.equal(byId.body.dataBase64, Buffer.from([0, 1, 255]).toString('base64'));
    assert.equal(byId.body.data, undefined);
    const byOffset = await get(`/api/v1/events/${byId.body.offset}`);
    assert.equal(byOffset.body.id, blob.id);
  });

  test('bad parameters answer 400 problem documents naming the parameter', async () => {
    for (const [url, parameter] of [
      ['/api/v1/events?selector=bad', 'selector'],
      ['/api/v1/events?limit=0', 'limit'],
      ['/api/v1/events?limit=abc', 'limit'],
      ['/api/v1/events?since=yesterday', 'since'],
      ['/api/v1/events?after=-1', 'after'],
      ['/api/v1/events?colour=red', 'colour'],
      ['/api/v1/events/by-id/42', 'id'],
    ] as const) {
      const r = await get(url);
      assert.equal(r.status, 400, url);
      assert.match(r.type, /application\/problem\+json/);
      assert.equal(r.body.parameter, parameter, `${url}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.status, 400);
      assert.ok(typeof r.body.detail === 'string' && r.body.detail.length > 0);
    }
  });

  test('404s are problem documents', async () => {
    const missing = await get('/api/v1/events/999999');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'NOT_FOUND');
    const route = await get('/api/v1/nothing');
    assert.equal(route.status, 404);
    assert.match(route.type, /problem\+json/);
  });
});

describe('POST /api/v1/events', () => {
  test('publishes to herald.ingest and answers 202 with the id once confirmed', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/events', payload: { sender: 'crm', type: 'lead.won', data: { n: 1 } } });
    assert.equal(res.statusCode, 202);
    const { id } = res.json() as { id: string };
    const msg = await ch.get('ingest-copy', { noAck: true });
    assert.ok(msg);
    const e = fromAmqp({ routingKey: msg.fields.routingKey, content: msg.content, properties: msg.properties });
    assert.equal(e.id, id);
    assert.equal(e.sender, 'crm');
    assert.deepEqual(JSON.parse(e.data.toString()), { n: 1 });
  });

  test('bad bodies: 400 naming the field, 413 over the size limit', async () => {
    const post = (payload: unknown) => app.inject({ method: 'POST', url: '/api/v1/events', payload: payload as Record<string, unknown> });
    const unknown = await post({ sender: 'crm', type: 'x', colour: 'red' });
    assert.equal(unknown.statusCode, 400);
    assert.equal(unknown.json().parameter, 'colour');
    const sender = await post({ sender: 'c r m', type: 'x' });
    assert.equal(sender.statusCode, 400);
    assert.equal(sender.json().code, 'INVALID_SENDER');
    const missing = await post({ sender: 'crm' });
    assert.equal(missing.statusCode, 400);
    assert.equal(missing.json().parameter, 'type');
    const big = await post({ sender: 'crm', type: 'x', data: 'a'.repeat(2000) });
    assert.equal(big.statusCode, 413);
    assert.equal(big.json().code, 'EVENT_TOO_LARGE');
  });
});

describe('health and the OpenAPI document', () => {
  test('readyz answers 503 naming the component that is down', async () => {
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get('/readyz')).status, 200);
    ready = false;
    const r = await get('/readyz');
    ready = true;
    assert.equal(r.status, 503);
    assert.deepEqual(r.body.components, { store: true, amqp: false });
  });

  test('openapi.json lists every route with its parameters', async () => {
    const r = await get('/openapi.json');
    assert.equal(r.body.openapi, '3.1.0');
    const paths = r.body.paths as Record<string, Record<string, { parameters: { name: string }[] }>>;
    assert.ok(paths['/api/v1/events']?.get && paths['/api/v1/events']?.post);
    assert.ok(paths['/api/v1/events/{offset}']?.get);
    assert.ok(paths['/api/v1/events/by-id/{id}']?.get);
    assert.ok(paths['/healthz']?.get && paths['/readyz']?.get);
    assert.deepEqual(
      paths['/api/v1/events']?.get?.parameters.map((p) => p.name),
      ['selector', 'after', 'since', 'until', 'last', 'limit'],
    );
  });
});
