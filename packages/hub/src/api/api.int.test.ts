import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEvent, fromAmqp, type HeraldEvent, INGEST_EXCHANGE, matches, parseRoutingKey, toAmqp, wireTopology } from '@herald/core';
import {
  createTestDatabase,
  createTestVhost,
  invalidSelectorCases,
  selectorCases,
  type TestDatabase,
  type TestVhost,
} from '@herald/testing';
import amqp from 'amqplib';
import type { FastifyInstance } from 'fastify';
import { openStore, type SqlStore } from '../store/index.ts';
import { createApi, type Readiness } from './index.ts';

// The REST API against the real PostgreSQL store, publishing to a real RabbitMQ vhost with
// confirms, as the hub does; requests go through fastify's inject (the same routing, schemas and
// error handling as over a socket).
let db: TestDatabase;
let vhost: TestVhost;
let store: SqlStore;
let app: FastifyInstance;
let conn: amqp.ChannelModel;
let ch: amqp.ConfirmChannel;
let readiness: boolean | Readiness | Error = { store: true, amqp: true };
/** Everything in the log, in offset order. */
const seeded: HeraldEvent[] = [];
let blob: HeraldEvent;
const MAX_EVENT_BYTES = 1024;

interface EventDoc {
  offset: string;
  id: string;
  sender: string;
  type: string;
  time: string;
  contentType: string;
  data?: unknown;
  dataBase64?: string;
}

async function get(url: string) {
  const res = await app.inject({ method: 'GET', url });
  return { status: res.statusCode, type: String(res.headers['content-type']), body: res.json() as Record<string, unknown> };
}

async function post(payload: unknown, on = app) {
  const res = await on.inject({ method: 'POST', url: '/api/v1/events', payload: payload as Record<string, unknown> });
  return { status: res.statusCode, type: String(res.headers['content-type']), body: res.json() as Record<string, unknown> };
}

const events = (body: Record<string, unknown>) => body.events as EventDoc[];
const numbers = (body: Record<string, unknown>) => events(body).map((e) => (e.data as { i: number }).i);
const selectorParam = (s: string | readonly string[]) => encodeURIComponent(typeof s === 'string' ? s : s.join(','));

/** Confirmed publish to herald.ingest on a plain amqplib confirm channel, as the hub's ingest does. */
async function publishToIngest(event: HeraldEvent): Promise<void> {
  const m = toAmqp(event);
  await new Promise<void>((resolve, reject) =>
    ch.publish(INGEST_EXCHANGE, m.routingKey, m.content, m.properties, (err) => (err ? reject(err) : resolve())),
  );
}

/** The next message the API published, from a queue bound to herald.ingest. */
async function nextPublished(): Promise<HeraldEvent> {
  for (let i = 0; i < 50; i++) {
    const msg = await ch.get('ingest-copy', { noAck: true });
    if (msg) return fromAmqp({ routingKey: msg.fields.routingKey, content: msg.content, properties: msg.properties });
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('nothing was published to herald.ingest');
}

before(async () => {
  [db, vhost] = await Promise.all([createTestDatabase('api'), createTestVhost('api')]);
  store = await openStore({ url: db.url });
  await store.migrate();
  await store.acquireWriterLease();
  conn = await amqp.connect(vhost.url, { noDelay: true });
  ch = await conn.createConfirmChannel();
  for (const e of wireTopology('router').exchanges) await ch.assertExchange(e.name, e.type, { durable: true });
  await ch.assertQueue('ingest-copy', { durable: true });
  await ch.bindQueue('ingest-copy', INGEST_EXCHANGE, '#');

  // One event per routing key of the shared selector table, in 2025 …
  const keys = new Set(selectorCases.flatMap((c) => [...c.match, ...c.miss]));
  const start = Date.parse('2025-06-01T00:00:00Z');
  for (const [n, key] of [...keys].entries()) {
    const { sender, type } = parseRoutingKey(key);
    seeded.push(createEvent({ sender, type, data: { key }, time: start + n * 1000 }));
  }
  // … then 25 numbered events a minute apart from 2026-01-01T00:00Z, then one binary body.
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
  blob = createEvent({ sender: 'blob', type: 'raw', data: Buffer.from([0, 1, 255]), time: base + 30 * 60_000 });
  seeded.push(blob);
  const appended = await store.append(seeded);
  assert.equal(appended.stored.length, seeded.length);

  app = await createApi({
    store,
    ready: () => {
      if (readiness instanceof Error) throw readiness;
      return readiness;
    },
    maxEventBytes: MAX_EVENT_BYTES,
    publish: publishToIngest,
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
  test('each selector of the shared table returns exactly its matching events, ascending', async () => {
    for (const c of selectorCases) {
      const r = await get(`/api/v1/events?selector=${selectorParam(c.selector)}&limit=1000`);
      assert.equal(r.status, 200, c.name);
      const got = events(r.body);
      const keys = new Set(got.map((e) => `${e.sender}.${e.type}`));
      for (const key of c.match) assert.ok(keys.has(key), `${c.name}: ${key} should match`);
      for (const key of c.miss) assert.ok(!keys.has(key), `${c.name}: ${key} should not match`);
      assert.deepEqual(
        got.map((e) => e.id),
        seeded.filter((e) => matches(c.selector, e.sender, e.type)).map((e) => e.id),
        c.name,
      );
      const offsets = got.map((e) => BigInt(e.offset));
      assert.ok(
        offsets.every((o, i) => i === 0 || o > (offsets[i - 1] as bigint)),
        'ascending',
      );
      assert.equal(r.body.next, null);
    }
  });

  test('offsets and next are decimal strings; paging with next reaches the end with nothing lost', async () => {
    const seen: string[] = [];
    let url = '/api/v1/events?selector=*:*&limit=7';
    let pages = 0;
    for (;;) {
      const page = await get(url);
      pages++;
      assert.ok(events(page.body).every((e) => /^[0-9]+$/.test(e.offset)));
      seen.push(...events(page.body).map((e) => e.id));
      if (page.body.next === null) break;
      assert.equal(typeof page.body.next, 'string');
      assert.equal(page.body.next, events(page.body).at(-1)?.offset);
      url = `/api/v1/events?selector=*:*&limit=7&after=${page.body.next}`;
    }
    assert.equal(pages, Math.ceil(seeded.length / 7));
    assert.deepEqual(
      seen,
      seeded.map((e) => e.id),
    );
    // The default page is 100 events; no selector means *:*.
    const all = await get('/api/v1/events');
    assert.equal(events(all.body).length, Math.min(100, seeded.length));
  });

  test('since and until bound the time (since inclusive, until exclusive)', async () => {
    const timed = await get('/api/v1/events?since=2026-01-01T00:05:00Z&until=2026-01-01T00:08:00Z');
    assert.deepEqual(numbers(timed.body), [5, 6, 7]);
    const offsetZone = await get(`/api/v1/events?since=${encodeURIComponent('2026-01-01T01:20:00+01:00')}&selector=billing:*`);
    assert.deepEqual(numbers(offsetZone.body), [21, 23]);
    const before2026 = await get('/api/v1/events?until=2026-01-01&limit=1000');
    assert.equal(events(before2026.body).length, seeded.length - 26);
  });

  test('last N is the newest N (ascending); with after, the newest N above that offset', async () => {
    const last = await get('/api/v1/events?selector=billing:*&last=3');
    assert.deepEqual(numbers(last.body), [19, 21, 23]);
    assert.equal(last.body.next, null);
    const within = await get('/api/v1/events?selector=billing:*&last=2&until=2026-01-01T00:10:00Z');
    assert.deepEqual(numbers(within.body), [7, 9]);
    const o21 = events(last.body)[1]?.offset;
    const lastAfter = await get(`/api/v1/events?selector=billing:*&last=5&after=${o21}`);
    assert.deepEqual(numbers(lastAfter.body), [23]);
  });

  test('JSON data comes parsed, binary data as base64; one event by offset and by id', async () => {
    const byId = await get(`/api/v1/events/by-id/${blob.id}`);
    assert.equal(byId.status, 200);
    assert.equal(byId.body.contentType, 'application/octet-stream');
    assert.equal(byId.body.dataBase64, Buffer.from([0, 1, 255]).toString('base64'));
    assert.equal(byId.body.data, undefined);
    const byOffset = await get(`/api/v1/events/${byId.body.offset}`);
    assert.equal(byOffset.body.id, blob.id);
    assert.equal(byOffset.body.time, '2026-01-01T00:30:00.000Z');
    const json = await get(`/api/v1/events/by-id/${seeded[0]?.id}`);
    assert.equal(json.body.contentType, 'application/json');
    assert.deepEqual(json.body.data, { key: [...new Set(selectorCases.flatMap((c) => [...c.match, ...c.miss]))][0] });
    assert.equal(json.body.dataBase64, undefined);
    assert.equal(json.body.offset, '1');
  });

  test('bad parameters answer 400 problem documents naming the parameter', async () => {
    for (const [url, parameter] of [
      ['/api/v1/events?selector=bad', 'selector'],
      ['/api/v1/events?limit=0', 'limit'],
      ['/api/v1/events?limit=1001', 'limit'],
      ['/api/v1/events?limit=abc', 'limit'],
      ['/api/v1/events?last=0', 'last'],
      ['/api/v1/events?last=3&limit=3', 'limit'],
      ['/api/v1/events?since=yesterday', 'since'],
      ['/api/v1/events?until=2026-01-01T00:00:00', 'until'],
      ['/api/v1/events?since=1', 'since'],
      ['/api/v1/events?after=-1', 'after'],
      ['/api/v1/events?after=9223372036854775808', 'after'],
      ['/api/v1/events?colour=red', 'colour'],
      ['/api/v1/events/abc', 'offset'],
      ['/api/v1/events/by-id/42', 'id'],
    ] as const) {
      const r = await get(url);
      assert.equal(r.status, 400, url);
      assert.match(r.type, /^application\/problem\+json/);
      assert.equal(r.body.parameter, parameter, `${url}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.status, 400);
      assert.equal(r.body.title, 'Bad Request');
      assert.equal(r.body.instance, url);
      assert.ok(typeof r.body.type === 'string' && typeof r.body.code === 'string');
      assert.ok(typeof r.body.detail === 'string' && r.body.detail.length > 0);
    }
  });

  test('a bad selector is a 400 naming `selector`, with the selector error message', async () => {
    for (const c of invalidSelectorCases) {
      const r = await get(`/api/v1/events?selector=${selectorParam(c.selector)}`);
      assert.equal(r.status, 400, String(c.selector));
      assert.equal(r.body.parameter, 'selector');
      assert.equal(r.body.code, 'INVALID_SELECTOR');
      assert.ok(String(r.body.detail).includes(c.mentions), `${r.body.detail} should mention ${c.mentions}`);
    }
  });

  test('404s are problem documents: no such offset, no such id, no such route', async () => {
    const missing = await get('/api/v1/events/999999');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'NOT_FOUND');
    assert.match(missing.type, /^application\/problem\+json/);
    const noId = await get('/api/v1/events/by-id/0190f0e4-0000-7000-8000-000000000000');
    assert.equal(noId.status, 404);
    assert.equal(noId.body.code, 'NOT_FOUND');
    const route = await get('/api/v1/nothing');
    assert.equal(route.status, 404);
    assert.match(route.type, /^application\/problem\+json/);
    assert.equal(route.body.status, 404);
  });
});

describe('POST /api/v1/events', () => {
  test('publishes to herald.ingest and answers 202 with the id once confirmed', async () => {
    const res = await post({ sender: 'crm', type: 'lead.won', data: { n: 1 }, subject: 's-1', correlationId: 'c-1' });
    assert.equal(res.status, 202);
    const id = res.body.id as string;
    const e = await nextPublished();
    assert.equal(e.id, id);
    assert.equal(e.sender, 'crm');
    assert.equal(e.type, 'lead.won');
    assert.equal(e.correlationId, 'c-1');
    assert.deepEqual(JSON.parse(e.data.toString()), { n: 1 });
  });

  test('given id and time are kept; dataBase64 carries bytes; text content types take a string', async () => {
    const id = '0190f0e4-1111-7000-8000-000000000001';
    const withId = await post({ sender: 'crm', type: 'x', id, time: '2026-02-03T04:05:06.789Z', data: [1, 2] });
    assert.deepEqual(withId.body, { id });
    const e1 = await nextPublished();
    assert.equal(e1.id, id);
    assert.equal(e1.time, Date.parse('2026-02-03T04:05:06.789Z'));

    await post({ sender: 'crm', type: 'bin', dataBase64: Buffer.from([9, 0, 200]).toString('base64') });
    const e2 = await nextPublished();
    assert.deepEqual([...e2.data], [9, 0, 200]);
    assert.equal(e2.contentType, 'application/octet-stream');

    await post({ sender: 'crm', type: 'txt', contentType: 'text/plain', data: 'hello' });
    const e3 = await nextPublished();
    assert.equal(e3.data.toString(), 'hello');
    assert.equal(e3.contentType, 'text/plain');
  });

  test('bad bodies: 400 naming the field', async () => {
    for (const [payload, parameter] of [
      [{ sender: 'crm', type: 'x', colour: 'red' }, 'colour'],
      [{ sender: 'c r m', type: 'x' }, 'sender'],
      [{ sender: 'crm', type: 'a..b' }, 'type'],
      [{ sender: 'crm' }, 'type'],
      [{ type: 'x' }, 'sender'],
      [{ sender: 42, type: 'x' }, 'sender'],
      [{ sender: 'crm', type: 'x', id: 'not-a-uuid' }, 'id'],
      [{ sender: 'crm', type: 'x', time: 'tomorrow' }, 'time'],
      [{ sender: 'crm', type: 'x', data: 1, dataBase64: 'AA==' }, 'dataBase64'],
      [{ sender: 'crm', type: 'x', dataBase64: 'not base64!' }, 'dataBase64'],
      [{ sender: 'crm', type: 'x', contentType: 'text/plain', data: { a: 1 } }, 'data'],
    ] as const) {
      const r = await post(payload);
      assert.equal(r.status, 400, JSON.stringify(payload));
      assert.match(r.type, /^application\/problem\+json/);
      assert.equal(r.body.parameter, parameter, `${JSON.stringify(payload)} → ${JSON.stringify(r.body)}`);
    }
    const sender = await post({ sender: 'c r m', type: 'x' });
    assert.equal(sender.body.code, 'INVALID_SENDER');
    const notJson = await app.inject({
      method: 'POST',
      url: '/api/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: '{',
    });
    assert.equal(notJson.statusCode, 400);
    assert.match(String(notJson.headers['content-type']), /^application\/problem\+json/);
  });

  test('over the size limit: 413 problem document, for the event body and for the request', async () => {
    const big = await post({ sender: 'crm', type: 'x', data: 'a'.repeat(MAX_EVENT_BYTES + 10) });
    assert.equal(big.status, 413);
    assert.match(big.type, /^application\/problem\+json/);
    assert.equal(big.body.code, 'EVENT_TOO_LARGE');
    assert.equal(big.body.parameter, 'data');
    const huge = await post({ sender: 'crm', type: 'x', data: 'a'.repeat(200_000) });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.code, 'EVENT_TOO_LARGE');
  });

  test('an unexpected failure is a 500 problem document that does not leak its message', async () => {
    const broken = await createApi({
      store,
      ready: () => true,
      publish: async () => {
        throw new Error('password=hunter2 at amqp://10.0.0.1');
      },
    });
    try {
      const r = await post({ sender: 'crm', type: 'x' }, broken);
      assert.equal(r.status, 500);
      assert.match(r.type, /^application\/problem\+json/);
      assert.ok(!JSON.stringify(r.body).includes('hunter2'));
      assert.ok(!JSON.stringify(r.body).includes('10.0.0.1'));
    } finally {
      await broken.close();
    }
  });
});

describe('health and the OpenAPI document', () => {
  test('healthz is 200; readyz is 200 when every component is ok, else 503 naming those that are down', async () => {
    assert.deepEqual((await get('/healthz')).body, { status: 'ok' });
    const ok = await get('/readyz');
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, 'ready');
    try {
      readiness = { store: true, amqp: 'connection refused' };
      const down = await get('/readyz');
      assert.equal(down.status, 503);
      assert.deepEqual(down.body.components, { store: true, amqp: 'connection refused' });
      assert.match(String(down.body.detail), /amqp \(connection refused\)/);
      readiness = { store: false, amqp: 'ok' };
      assert.equal((await get('/readyz')).status, 503);
      readiness = false;
      assert.equal((await get('/readyz')).status, 503);
      readiness = new Error('lost');
      const threw = await get('/readyz');
      assert.equal(threw.status, 503);
      assert.match(String(threw.body.detail), /lost/);
      assert.equal((await get('/healthz')).status, 200);
    } finally {
      readiness = { store: true, amqp: true };
    }
  });

  test('/docs: a page and its script under a strict CSP, outside the OpenAPI document; the script parses', async () => {
    const page = await app.inject({ method: 'GET', url: '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    assert.match(page.body, /<script type="module" src="\/docs\/docs.js">/);
    const script = await app.inject({ method: 'GET', url: '/docs/docs.js' });
    assert.match(String(script.headers['content-type']), /^text\/javascript/);
    assert.doesNotThrow(() => new Function(script.body), 'valid JavaScript');
    assert.doesNotMatch(script.body, /innerHTML/, 'text only, never HTML');
  });

  test('openapi.json is OpenAPI 3.1 and lists every route with its parameters and problem responses', async () => {
    const r = await get('/openapi.json');
    assert.equal(r.status, 200);
    assert.equal(r.body.openapi, '3.1.0');
    type Op = { parameters: { name: string; in: string; required: boolean }[]; responses: Record<string, unknown>; requestBody?: unknown };
    const paths = r.body.paths as Record<string, Record<string, Op>>;
    assert.deepEqual(Object.keys(paths).sort(), [
      '/api/v1/events',
      '/api/v1/events/by-id/{id}',
      '/api/v1/events/{offset}',
      '/healthz',
      '/readyz',
    ]);
    const query = paths['/api/v1/events']?.get as Op;
    assert.deepEqual(
      query.parameters.map((p) => `${p.in}:${p.name}`),
      ['query:selector', 'query:after', 'query:since', 'query:until', 'query:last', 'query:limit'],
    );
    assert.ok(query.responses['200'] && query.responses['400'] && query.responses.default);
    const publish = paths['/api/v1/events']?.post as Op;
    assert.ok(publish.requestBody && publish.responses['202'] && publish.responses['413']);
    // The body's example is one the route takes.
    const example = (publish.requestBody as { content: Record<string, { schema: { examples?: unknown[] } }> }).content['application/json']
      ?.schema.examples?.[0];
    assert.ok(example, 'an example body');
    const posted = await app.inject({ method: 'POST', url: '/api/v1/events', payload: example as Record<string, unknown> });
    assert.equal(posted.statusCode, 202, posted.body);
    assert.deepEqual(paths['/api/v1/events/{offset}']?.get?.parameters, [
      {
        name: 'offset',
        in: 'path',
        required: true,
        description: 'offset, a non-negative 64-bit integer in decimal',
        schema: { type: 'string', description: 'offset, a non-negative 64-bit integer in decimal' },
      },
    ]);
    assert.equal(paths['/api/v1/events/by-id/{id}']?.get?.parameters[0]?.name, 'id');
    assert.ok(paths['/api/v1/events/by-id/{id}']?.get?.responses['404']);
    assert.ok(paths['/readyz']?.get?.responses['503']);
    const ids = Object.values(paths).flatMap((methods) => Object.values(methods).map((op) => (op as { operationId?: string }).operationId));
    assert.ok(
      ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z]+$/.test(id)),
      ids.join(' '),
    );
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    assert.equal((paths['/api/v1/events/{offset}']?.get as { operationId?: string }).operationId, 'getEventsByOffset');
    // Shared schemas are components, referred to where they are used.
    const components = (r.body.components as { schemas: Record<string, { properties?: Record<string, unknown> }> }).schemas;
    assert.ok(components.Event?.properties?.offset, 'Event is a component');
    const one = paths['/api/v1/events/{offset}']?.get?.responses['200'] as { content: Record<string, { schema: unknown }> };
    assert.deepEqual(one.content['application/json']?.schema, { $ref: '#/components/schemas/Event' });
  });
});

// Last in the file: it adds 18 MiB of events the selector cases above do not expect.
describe('GET /api/v1/events bounded in bytes', () => {
  test('a page ends once its bodies reach 16 MiB; next goes on from there, nothing lost or twice', async () => {
    const big = Array.from({ length: 18 }, (_, i) =>
      createEvent({ sender: 'bulk', type: 'blob', data: Buffer.alloc(1024 * 1024, i), contentType: 'application/octet-stream' }),
    );
    const stored = await store.append(big);
    assert.equal(stored.stored.length, big.length);
    const seen: string[] = [];
    let after = '';
    let pages = 0;
    for (;;) {
      const page = await get(`/api/v1/events?selector=bulk:*&limit=1000${after}`);
      assert.equal(page.status, 200);
      const evs = events(page.body);
      pages++;
      if (pages === 1) assert.ok(evs.length >= 16 && evs.length < 18, `first page ${evs.length} events`);
      seen.push(...evs.map((e) => e.id));
      if (page.body.next === null) break;
      after = `&after=${page.body.next}`;
    }
    assert.deepEqual(
      seen,
      big.map((e) => e.id),
    );
    assert.ok(pages >= 2);
    const last = await get('/api/v1/events?selector=bulk:*&last=18');
    const newest = events(last.body).map((e) => e.id);
    assert.ok(newest.length >= 16 && newest.length < 18, `last=18 gave ${newest.length}`);
    assert.deepEqual(
      newest,
      big.slice(-newest.length).map((e) => e.id),
      'the newest ones, ascending',
    );
  });
});
