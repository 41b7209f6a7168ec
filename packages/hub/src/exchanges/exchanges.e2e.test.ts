// /api/v1/exchanges against a real hub process (router mode, PostgreSQL, RabbitMQ): an exchange
// made for a selector delivers exactly that selector's events to a queue a client binds to it;
// the same POST again is 200, another selector 409, reserved and foreign names refused; a restart
// declares a lost exchange again; a delete removes it from RabbitMQ.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  makeEvents,
  restClient,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import { type Channel, type ChannelModel, connect } from 'amqplib';

describe('exchanges (e2e: hub process, PostgreSQL, RabbitMQ)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: HeraldProcess;
  let base: string;
  let env: Record<string, string>;
  let conn: ChannelModel;

  before(async () => {
    vhost = await createTestVhost('exchanges');
    db = await createTestDatabase('exchanges');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    env = { HERALD_AMQP_URL: vhost.url, HERALD_DATABASE_URL: db.url, HERALD_MODE: 'router', HERALD_HTTP_PORT: String(port) };
    hub = await startHubProcess(env);
    conn = await connect(vhost.url, { noDelay: true });
    conn.on('error', () => undefined);
  });
  after(async () => {
    await conn?.close().catch(() => undefined);
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  const call = (method: string, path: string, body?: unknown) => restClient(base)(method, path, body);

  /** Whether RabbitMQ has the exchange (checkExchange closes its channel when it has not). */
  const exists = async (name: string) => {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    try {
      await ch.checkExchange(name);
      await ch.close();
      return true;
    } catch {
      return false;
    }
  };

  test('a queue bound to the exchange receives exactly the selector’s events, with their routing keys', async () => {
    const created = await call('POST', '/api/v1/exchanges', { name: 'crm.feed', selector: ['billing:invoice.*', '*:user.created'] });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.json().selector, ['*:user.created', 'billing:invoice.*']);
    assert.equal((await call('POST', '/api/v1/exchanges', { name: 'crm.feed', selector: 'billing:invoice.*,*:user.created' })).status, 200);
    const other = await call('POST', '/api/v1/exchanges', { name: 'crm.feed', selector: 'billing:*' });
    assert.equal(other.status, 409, other.text);
    assert.deepEqual(
      ((await call('GET', '/api/v1/exchanges')).json().items as { name: string }[]).map((e) => e.name),
      ['crm.feed'],
    );

    const ch: Channel = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, 'crm.feed', '#');
    const got: string[] = [];
    await ch.consume(q.queue, (m) => m && got.push(m.fields.routingKey), { noAck: true });
    // 4 senders × 3 types (invoice.paid, parcel.sent, user.created), 10 of each.
    const events = makeEvents(120);
    const wanted = events
      .map((e) => e.routingKey)
      .filter((k) => k.startsWith('billing.invoice.') || k.endsWith('.user.created'))
      .sort();
    assert.equal(wanted.length, 10 + 40);
    const pub = await createRawPublisher(vhost.url);
    assert.ok((await pub.publishMany(INGEST_EXCHANGE, events, 100)).every(Boolean));
    await pub.close();
    await waitFor('the selector’s events', () => got.length >= wanted.length, 30_000, 50);
    // A marker after the rest, through the same path: once it is here, nothing else is on its way.
    const marker = await createRawPublisher(vhost.url);
    assert.ok((await marker.publishMany(INGEST_EXCHANGE, makeEvents(1, { senders: ['zz'], types: ['user.created'] }))).every(Boolean));
    await marker.close();
    await waitFor('the marker', () => got.includes('zz.user.created'), 30_000, 50);
    assert.deepEqual(got.filter((k) => k !== 'zz.user.created').sort(), wanted);
    await ch.close();
  });

  test('hostile and reserved input is 400 naming the field; a RabbitMQ exchange Herald did not make is 409', async () => {
    const cases: [unknown, string][] = [
      [{ name: 'herald.events', selector: '*:*' }, 'name'],
      [{ name: 'Herald-x', selector: '*:*' }, 'name'],
      [{ name: 'amq.topic', selector: '*:*' }, 'name'],
      [{ name: 'a\u0000b', selector: '*:*' }, 'name'],
      [{ name: 'x'.repeat(201), selector: '*:*' }, 'name'],
      [{ name: 'ok', selector: 'nocolon' }, 'selector'],
      [{ name: 'ok', selector: '*:a.#.b.#.c' }, 'selector'],
    ];
    for (const [body, parameter] of cases) {
      const r = await call('POST', '/api/v1/exchanges', body);
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 60)}: ${r.text}`);
      assert.equal(r.json().parameter, parameter, r.text);
    }
    const ch = await conn.createChannel();
    await ch.assertExchange('theirs', 'fanout', { durable: false });
    await ch.close();
    const theirs = await call('POST', '/api/v1/exchanges', { name: 'theirs', selector: '*:*' });
    assert.equal(theirs.status, 409, theirs.text);
    assert.equal((await call('GET', '/api/v1/exchanges/nope')).status, 404);
    assert.equal((await call('DELETE', '/api/v1/exchanges/nope')).status, 404);
  });

  test('a restart declares a lost exchange again; a delete removes it from RabbitMQ and the store', async () => {
    const ch = await conn.createChannel();
    await ch.deleteExchange('crm.feed');
    await ch.close();
    assert.equal(await exists('crm.feed'), false);
    await hub.kill('SIGTERM');
    hub = await startHubProcess(env);
    assert.equal(await exists('crm.feed'), true, 'declared again at start');
    assert.equal((await call('DELETE', '/api/v1/exchanges/crm.feed')).status, 204);
    assert.equal(await exists('crm.feed'), false);
    assert.equal((await call('GET', '/api/v1/exchanges/crm.feed')).status, 404);
  });
});
