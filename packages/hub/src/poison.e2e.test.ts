import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { subscription } from '@herald/client/grpc';
import {
  DEAD_QUEUE,
  EVENTS_EXCHANGE,
  GRPC_ERROR_CODE_KEY,
  GRPC_SERVICE,
  Headers,
  INGEST_EXCHANGE,
  PROTO_LOADER_OPTIONS,
  PROTO_PATH,
} from '@herald/core';
import { createRawPublisher, type RawPublisher, type RouterHub, startRouterHub, waitFor } from '@herald/testing';
import amqp from 'amqplib';
import pg from 'pg';
import { openSse } from './api/subscriptions-test-kit.ts';

// Bad input at every edge of a router hub on PostgreSQL: each case is refused with a 400 naming the
// field, or dead-lettered with its reason, and an ordinary event published afterwards is still
// stored and forwarded. Each reproduces one way a single input used to stop the hub for everyone.
let fx: RouterHub;
let raw: RawPublisher;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;
let queue: string;
/** Ids delivered on herald.events to this file's queue. */
const delivered = new Set<string>();

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${fx.http}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** The flow still works: an ordinary event published now over AMQP is stored and forwarded within 5 s. */
async function flowStillWorks(): Promise<void> {
  const id = randomUUID();
  assert.ok(await raw.publish(INGEST_EXCHANGE, { routingKey: 'canary.ping', content: Buffer.from('{}'), options: { messageId: id } }));
  await waitFor(`canary ${id} forwarded`, () => delivered.has(id), 5000, 20);
  assert.equal((await api('GET', `/api/v1/events/by-id/${id}`)).status, 200);
}

/** Dead-letter reasons read off herald.dead so far, by original message id. */
const deadReasons = new Map<string, string>();

/** Waits for a dead letter on herald.dead whose original message id is `id`; returns its reason. */
async function deadLetterOf(id: string): Promise<string> {
  await waitFor(
    `dead letter of ${id}`,
    async () => {
      for (let m = await ch.get(DEAD_QUEUE, { noAck: true }); m !== false; m = await ch.get(DEAD_QUEUE, { noAck: true }))
        deadReasons.set(String(m.properties.messageId), String(m.properties.headers?.[Headers.DEAD_REASON]));
      return deadReasons.has(id);
    },
    5000,
    50,
  );
  return deadReasons.get(id) as string;
}

function refused(res: { status: number; body: Record<string, unknown> }, parameter: string): void {
  assert.equal(res.status, 400, JSON.stringify(res.body));
  assert.equal(res.body.parameter, parameter, JSON.stringify(res.body));
}

const event = (extra: Record<string, unknown> = {}) => ({ sender: 'billing', type: 'invoice.paid', data: { n: 1 }, ...extra });

before(async () => {
  fx = await startRouterHub('poison');
  raw = await createRawPublisher(fx.vhost.url);
  conn = await amqp.connect(fx.vhost.url);
  ch = await conn.createChannel();
  queue = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.bindQueue(queue, EVENTS_EXCHANGE, '#');
  await ch.purgeQueue(DEAD_QUEUE).catch(() => undefined);
  await ch.consume(
    queue,
    (m) => {
      if (m?.properties.messageId) delivered.add(m.properties.messageId);
    },
    { noAck: true },
  );
});

after(async () => {
  await conn?.close().catch(() => undefined);
  await raw?.close();
  await fx?.close();
});

describe('REST refuses what could never be stored or forwarded, naming the field', () => {
  test('a NUL in the subject (once taken, then retried by ingest forever)', async () => {
    refused(await api('POST', '/api/v1/events', event({ subject: 'a\u0000b' })), 'subject');
    await flowStillWorks();
  });

  test('correlation ids and header names over 255 bytes, header values past the 64 KiB table (once 503s)', async () => {
    refused(await api('POST', '/api/v1/events', event({ correlationId: 'c'.repeat(256) })), 'correlationId');
    refused(await api('POST', '/api/v1/events', event({ headers: { ['h'.repeat(256)]: 'v' } })), 'headers');
    refused(await api('POST', '/api/v1/events', event({ headers: { big: 'v'.repeat(70_000) } })), 'headers');
    refused(await api('POST', '/api/v1/events', event({ time: '+275760-09-13T00:00:00.001Z' })), 'time');
    await flowStillWorks();
  });

  test('offsets past 64 bits (once 500s)', async () => {
    refused(await api('POST', '/api/v1/replays', { selector: '*:*', from: { offset: '9999999999999999999' } }), 'from.offset');
    refused(await api('GET', '/api/v1/events?after=9999999999999999999'), 'after');
    refused(await api('GET', '/api/v1/events/9223372036854775808'), 'offset');
    const sub = await api('POST', '/api/v1/subscriptions', {
      name: 'big-start',
      selector: '*:*',
      start: { offset: '9999999999999999999' },
    });
    assert.equal(sub.status, 400, JSON.stringify(sub.body));
  });

  test('a pause of 40,000 patterns (once created, then breaking GET /api/v1/pauses)', async () => {
    const selector = Array.from({ length: 40_000 }, (_, i) => `s${i}:*`);
    const res = await api('POST', '/api/v1/pauses', { selector, ttl: 60 });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.code, 'INVALID_SELECTOR');
    assert.equal((await api('GET', '/api/v1/pauses')).status, 200);
  });

  test('NUL and lone surrogates anywhere in a request, and JSON nested too deep', async () => {
    refused(await api('POST', '/api/v1/pauses', { selector: 'billing:*', ttl: 60, reason: 'x\u0000' }), 'reason');
    refused(await api('POST', '/api/v1/events', '{"sender": "billing", "type": "a", "subject": "\\ud800"}'), 'subject');
    refused(await api('GET', '/api/v1/events?selector=billing%00:*'), 'selector');
    const deep = `{"sender": "billing", "type": "a", "data": ${'['.repeat(5000)}${']'.repeat(5000)}}`;
    refused(await api('POST', '/api/v1/events', deep), 'body');
    // NUL inside the data is the body's bytes, written as the escape \u0000: taken.
    assert.equal((await api('POST', '/api/v1/events', event({ data: { s: 'a\u0000b' } }))).status, 202);
    await flowStillWorks();
  });

  test('a selector whose binding key <sender>.<type> passes 255 bytes (once wedged the receivers: no subscription could be created after it)', async () => {
    const long = await api('POST', '/api/v1/subscriptions', { name: 'long-binding', selector: `billing:${'a'.repeat(250)}` });
    assert.equal(long.status, 400, JSON.stringify(long.body));
    assert.equal(long.body.code, 'INVALID_SELECTOR');
    const next = await Promise.race([
      api('POST', '/api/v1/subscriptions', { name: 'after-long-binding', selector: 'afterlong:*' }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000)),
    ]);
    assert.equal(next.status, 201, JSON.stringify(next.body));
  });

  test('a subscription name of 128 characters can be created, read back and deleted (once 414)', async () => {
    const name = `s${'x'.repeat(127)}`;
    assert.equal((await api('POST', '/api/v1/subscriptions', { name, selector: 'billing:*' })).status, 201);
    const got = await api('GET', `/api/v1/subscriptions/${name}`);
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.equal((await api('DELETE', `/api/v1/subscriptions/${name}`)).status, 204);
  });
});

describe('AMQP ingest dead-letters what could never be stored or forwarded, and goes on', () => {
  test('x-herald-time past what a Date holds (once broke every read of that part of the log)', async () => {
    const id = randomUUID();
    await raw.publish(INGEST_EXCHANGE, {
      routingKey: 'billing.invoice.paid',
      content: Buffer.from('{}'),
      options: { messageId: id, headers: { [Headers.TIME]: 9e15 } },
    });
    assert.match(await deadLetterOf(id), /x-herald-time/);
    await flowStillWorks();
    assert.equal((await api('GET', '/api/v1/events?last=50')).status, 200);
  });

  test('a 30 KB binary header value (once grew past 64 KiB when forwarded and looped)', async () => {
    const id = randomUUID();
    await raw.publish(INGEST_EXCHANGE, {
      routingKey: 'billing.invoice.paid',
      content: Buffer.from('{}'),
      options: { messageId: id, headers: { blob: Buffer.alloc(30_000, 0xfe) } },
    });
    assert.match(await deadLetterOf(id), /UTF-8/);
    await flowStillWorks();
  });

  test('a header named __proto__ holding bytes (amqplib makes the table inherit from them; once crashed the hub)', async () => {
    const id = randomUUID();
    const headers = Object.defineProperty({ [Headers.TIME]: 9e15 }, '__proto__', { value: Buffer.from([1, 2]), enumerable: true });
    await raw.publish(INGEST_EXCHANGE, {
      routingKey: 'billing.invoice.paid',
      content: Buffer.from('{}'),
      options: { messageId: id, headers },
    });
    assert.match(await deadLetterOf(id), /x-herald-time/);
    await flowStillWorks();
  });

  test('a NUL in a header or the subject header', async () => {
    const a = randomUUID();
    const b = randomUUID();
    await raw.publish(INGEST_EXCHANGE, {
      routingKey: 'billing.x',
      content: Buffer.from('{}'),
      options: { messageId: a, headers: { t: 'a\u0000' } },
    });
    await raw.publish(INGEST_EXCHANGE, {
      routingKey: 'billing.x',
      content: Buffer.from('{}'),
      options: { messageId: b, headers: { [Headers.SUBJECT]: '\u0000' } },
    });
    assert.match(await deadLetterOf(a), /NUL/);
    assert.match(await deadLetterOf(b), /NUL/);
    await flowStillWorks();
  });
});

describe('gRPC answers bad input with INVALID_ARGUMENT, promptly, and the connection goes on', () => {
  let client: grpc.Client;
  let service: grpc.ServiceDefinition;
  const identity = (b: Buffer) => b;
  before(async () => {
    service = (await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS }))[GRPC_SERVICE] as grpc.ServiceDefinition;
    client = new grpc.Client(fx.grpc, grpc.credentials.createInsecure());
  });
  after(() => client?.close());

  /** A Publish of `bytes` as they are; resolves with the error (null: OK) within 5 s or rejects. */
  const publishBytes = (bytes: Buffer) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        (service.Publish as grpc.MethodDefinition<Buffer, object>).path,
        identity,
        identity,
        bytes,
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (err) => resolve(err),
      ),
    );
  const encode = (method: string, message: object) => (service[method] as grpc.MethodDefinition<object, object>).requestSerialize(message);
  const good = () => encode('Publish', { sender: 'billing', type: 'invoice.paid', data: Buffer.from('{}') });

  test('a sender of 50,000 characters (its echo in the status once hung this call and every later one on the connection)', async () => {
    const err = await publishBytes(encode('Publish', { sender: 'é'.repeat(50_000), type: 'invoice.paid', data: Buffer.from('{}') }));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, `${err?.code} ${err?.details.slice(0, 200)}`);
    assert.deepEqual(err?.metadata.get(GRPC_ERROR_CODE_KEY), ['INVALID_SENDER']);
    assert.equal(await publishBytes(good()), null);
  });

  test('bytes that are not a PublishRequest or a SubscribeRequest (once INTERNAL)', async () => {
    const err = await publishBytes(Buffer.concat([good(), Buffer.from([0])]));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, `${err?.code} ${err?.details}`);
    assert.deepEqual(err?.metadata.get(GRPC_ERROR_CODE_KEY), ['INVALID_REQUEST']);
    const call = client.makeBidiStreamRequest((service.Subscribe as grpc.MethodDefinition<Buffer, object>).path, identity, identity);
    call.on('error', () => undefined);
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.write(Buffer.concat([encode('Subscribe', { open: { name: 'undecodable', selector: ['*:*'] } }), Buffer.from([0])]));
    const s = await status;
    assert.equal(s.code, grpc.status.INVALID_ARGUMENT, `${s.code} ${s.details}`);
    assert.deepEqual(s.metadata.get(GRPC_ERROR_CODE_KEY), ['INVALID_REQUEST']);
    assert.equal(await publishBytes(good()), null);
    await flowStillWorks();
  });
});

test('a pause with an adversarial selector and 40-segment types does not stall the hub (once 10 s without /healthz)', async () => {
  const alternating = Array.from({ length: 63 }, (_, i) => (i % 2 === 0 ? '#' : '*')).join('.');
  const pause = await api('POST', '/api/v1/pauses', { selector: [`*:${alternating}.zz`], ttl: 60 });
  assert.equal(pause.status, 201, JSON.stringify(pause.body));
  const type = Array.from({ length: 40 }, () => 'a').join('.');
  for (let i = 0; i < 3; i++)
    await raw.publish(INGEST_EXCHANGE, { routingKey: `billing.${type}`, content: Buffer.from('{}'), options: { messageId: randomUUID() } });
  const t0 = Date.now();
  assert.equal((await api('GET', '/healthz')).status, 200);
  assert.ok(Date.now() - t0 < 1000, `/healthz took ${Date.now() - t0} ms`);
  await flowStillWorks();
  assert.equal((await api('DELETE', `/api/v1/pauses/${pause.body.id}`)).status, 200);
});

test('a subscription whose selector has many # and events of 40 segments (once kept RabbitMQ routing at 100% CPU: no publish confirmed)', async () => {
  const alternating = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? '*' : '#')).join('.');
  const selector = [`*:${alternating}.*`, 'deep:a.#.b.#.c'];
  assert.equal((await api('POST', '/api/v1/subscriptions', { name: 'many-hashes', selector, start: 'new' })).status, 201);
  const got: string[] = [];
  const live = (async () => {
    for await (const e of subscription('many-hashes', selector, { url: fx.grpc })) {
      got.push(e.type);
      e.ack();
      if (e.type === 'a.b.z.c') break;
    }
  })();
  await waitFor('the consumer attached', async () => (await api('GET', '/api/v1/subscriptions/many-hashes')).body.state === 'active', 5000);
  const deep = Array.from({ length: 40 }, (_, i) => `s${i % 10}`).join('.');
  for (const type of [deep, 'a.x', 'a.b.c', 'a.b.x', 'a.b.z.c'])
    assert.equal((await api('POST', '/api/v1/events', { sender: 'deep', type, data: {} })).status, 202);
  await flowStillWorks();
  await Promise.race([live, new Promise((_, reject) => setTimeout(() => reject(new Error(`got only ${got.join(' ')}`)), 5000))]);
  // Bound as `*.*.#` and `deep.a.#` (a superset): the hub keeps what the selector matches.
  assert.deepEqual(got, [deep, 'a.b.c', 'a.b.z.c']);
});

test('every stored event reads back, whatever its time or body (rows written before the limits existed)', async () => {
  await fx.hub.kill('SIGTERM');
  const db = new pg.Client({ connectionString: fx.db.url });
  await db.connect();
  const ids = [randomUUID(), randomUUID(), randomUUID()];
  try {
    const { rows } = await db.query<{ head: string }>('SELECT COALESCE(MAX("offset"), 0)::text AS head FROM events');
    const head = BigInt(rows[0]?.head ?? '0');
    const insert = `INSERT INTO events ("offset", id, sender, type, time, content_type, headers, data) VALUES ($1, $2, 'odd', 'row', $3::timestamptz, 'application/json', '{}', $4)`;
    await db.query(insert, [(head + 1n).toString(), ids[0], '200000-01-01T00:00:00Z', Buffer.from('{}')]);
    await db.query(insert, [(head + 2n).toString(), ids[1], '2026-01-01T00:00:00Z', Buffer.from(`${'['.repeat(3000)}${']'.repeat(3000)}`)]);
    await db.query(insert, [(head + 3n).toString(), ids[2], '2026-01-01T00:00:00Z', Buffer.from([0x7b, 0xff, 0x7d])]);
  } finally {
    await db.end();
  }
  await fx.start();
  const res = await api('GET', '/api/v1/events?selector=odd:*&limit=10');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const docs = res.body.events as { id: string; time: string; dataBase64?: string }[];
  assert.deepEqual(
    docs.map((d) => d.id),
    ids,
  );
  assert.ok(docs[1]?.dataBase64 && docs[2]?.dataBase64, 'bodies that cannot be shown as JSON come back as base64');
  for (const id of ids) assert.equal((await api('GET', `/api/v1/events/by-id/${id}`)).status, 200);
  assert.equal((await api('POST', '/api/v1/subscriptions', { name: 'odd-reader', selector: 'odd:*', start: 'earliest' })).status, 201);
  const pulled = await api('GET', '/api/v1/subscriptions/odd-reader/events?max=10&wait=5');
  assert.equal(pulled.status, 200, JSON.stringify(pulled.body));
  assert.equal((pulled.body.events as unknown[]).length, 3);
  assert.equal((await api('POST', '/api/v1/subscriptions', { name: 'odd-sse', selector: 'odd:*', start: 'earliest' })).status, 201);
  const sse = await openSse(`${fx.http}/api/v1/subscriptions/odd-sse/stream`);
  try {
    await sse.waitFor(3);
  } finally {
    await sse.close();
  }
  const got: string[] = [];
  for await (const e of subscription('odd-grpc', 'odd:*', { url: fx.grpc, start: 'earliest' })) {
    got.push(e.id);
    e.ack();
    if (got.length === 3) break;
  }
  assert.deepEqual(got, ids);
  await flowStillWorks();
});
