// /api/v1/dead-letters against a real hub process (router mode, PostgreSQL, RabbitMQ): poison
// messages become dead letters one can list by selector and code and read whole; a redrive to a
// queue delivers the bytes and properties as they were; a redrive to herald.ingest of a good event
// stores it once however often it is re-sent; one that fails again comes back as a new dead letter;
// purges need a filter or all=true.
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
  spawnHerald,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import { connect } from 'amqplib';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';

describe('dead letters (e2e: hub process, PostgreSQL, RabbitMQ)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: HeraldProcess;
  let base: string;
  let store: Store;

  before(async () => {
    vhost = await createTestVhost('dead');
    db = await createTestDatabase('dead');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_MODE: 'router',
      HERALD_HTTP_PORT: String(port),
    });
    store = await openStore({ url: db.url });
  });
  after(async () => {
    await store?.close();
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  const call = (method: string, path: string, body?: unknown) => restClient(base)(method, path, body);
  type Item = { id: string; code: string; routingKey: string; messageId: string | null; redrives: number };
  const list = async (query = '') => (await call('GET', `/api/v1/dead-letters${query}`)).json() as { items: Item[]; next: string | null };

  test('poison messages: listed by selector and code, read whole; pages go on with next', async () => {
    const pub = await createRawPublisher(vhost.url);
    // A routing key without a type, and an event whose time header is not a time: two dead letters.
    assert.ok(
      await pub.publish(INGEST_EXCHANGE, { routingKey: 'billing', content: Buffer.from('{"a":1}'), options: { messageId: 'no-type' } }),
    );
    const [bad] = makeEvents(1, { senders: ['shipping'], types: ['parcel.sent'] });
    assert.ok(await pub.publish(INGEST_EXCHANGE, { ...bad!, options: { ...bad!.options, headers: { 'x-herald-time': 'yesterday' } } }));
    await pub.close();
    await waitFor('two dead letters', async () => (await list()).items.length >= 2, 30_000, 100);
    const all = (await list()).items;
    assert.equal(all.length, 2);
    assert.deepEqual(
      (await list('?selector=shipping:*')).items.map((l) => l.routingKey),
      ['shipping.parcel.sent'],
    );
    assert.equal((await list('?selector=billing:*')).items.length, 0, 'a routing key without a type matches no selector');
    assert.equal((await list(`?code=${all[0]!.code}`)).items.length >= 1, true);
    const page = await list('?limit=1');
    assert.equal(page.items.length, 1);
    assert.equal((await list(`?limit=1&after=${page.next}`)).items[0]?.id, all[1]!.id);
    const one = (await call('GET', `/api/v1/dead-letters/${all[0]!.id}`)).json();
    assert.equal(one.bodyText, '{"a":1}');
    assert.equal(Buffer.from(String(one.bodyBase64), 'base64').toString(), '{"a":1}');
    assert.equal((one.properties as { messageId?: string }).messageId, 'no-type');
    for (const bad of ['?selector=nocolon', '?code=lower', '?after=-1', '?limit=0'])
      assert.equal((await call('GET', `/api/v1/dead-letters${bad}`)).status, 400, bad);
    assert.equal((await call('GET', '/api/v1/dead-letters/999999')).status, 404);
    assert.equal((await call('GET', '/api/v1/dead-letters/x')).status, 400);
  });

  test('a redrive to a queue delivers the bytes and properties as they were, marked; to herald.ingest a poison message comes back as a new dead letter', async () => {
    const [first] = (await list()).items;
    const conn = await connect(vhost.url, { noDelay: true });
    const ch = await conn.createChannel();
    const q = await ch.assertQueue('redriven-here', { durable: false, autoDelete: false });
    const r = await call('POST', `/api/v1/dead-letters/${first!.id}/redrive`, { queue: q.queue });
    assert.equal(r.status, 200, r.text);
    let got: { body: string; messageId: unknown; redriven: unknown } | undefined;
    await waitFor(
      'the message in the queue',
      async () => {
        const m = await ch.get(q.queue, { noAck: true });
        if (m)
          got = { body: m.content.toString(), messageId: m.properties.messageId, redriven: m.properties.headers?.['x-herald-redriven'] };
        return got !== undefined;
      },
      10_000,
      50,
    );
    assert.deepEqual(got, { body: '{"a":1}', messageId: 'no-type', redriven: first!.id });
    assert.equal((await call('POST', `/api/v1/dead-letters/${first!.id}/redrive`, { queue: 'no-such-queue' })).status, 404);
    for (const body of [[1], { queue: 5 }, { queue: 'a b' }, { other: 1 }])
      assert.equal((await call('POST', `/api/v1/dead-letters/${first!.id}/redrive`, body)).status, 400, JSON.stringify(body));
    await ch.deleteQueue(q.queue);
    await conn.close();

    const before = (await list()).items.length;
    assert.equal((await call('POST', `/api/v1/dead-letters/${first!.id}/redrive`)).status, 200);
    await waitFor('it fails again: a new dead letter', async () => (await list()).items.length === before + 1, 30_000, 100);
    const again = (await list()).items;
    assert.equal(again.find((l) => l.id === first!.id)?.redrives, 2);
    assert.equal(again.at(-1)?.messageId, 'no-type');
  });

  test('a good event dead-lettered elsewhere (e.g. by an SDK subscriber): redriven twice, stored once with its id', async () => {
    const [event] = makeEvents(1, { senders: ['crm'], types: ['user.created'] });
    const id = String(event!.options!.messageId);
    await store.addDeadLetters([
      {
        reason: 'the handler failed 5 times',
        code: 'HANDLER_FAILED',
        exchange: 'herald.events',
        routingKey: event!.routingKey,
        messageId: id,
        properties: { ...event!.options!, headers: {} },
        body: event!.content,
        at: Date.now(),
      },
    ]);
    assert.equal((await call('POST', '/api/v1/dead-letters/redrive', { code: 'HANDLER_FAILED' })).json().redriven, 1);
    assert.equal((await call('POST', '/api/v1/dead-letters/redrive', { selector: 'crm:user.*' })).json().redriven, 1);
    await waitFor('the event stored', async () => (await call('GET', `/api/v1/events/by-id/${id}`)).status === 200, 30_000, 100);
    // A marker after both, through the same path: once it is stored, both redrives were taken.
    const [marker] = makeEvents(1, { senders: ['zz'], types: ['marker'] });
    const pub = await createRawPublisher(vhost.url);
    assert.ok(await pub.publish(INGEST_EXCHANGE, marker!));
    await pub.close();
    await waitFor(
      'the marker stored',
      async () => (await call('GET', `/api/v1/events/by-id/${marker!.options!.messageId}`)).status === 200,
      30_000,
      100,
    );
    const stored = (await call('GET', '/api/v1/events?selector=crm:*')).json().events as { id: string }[];
    assert.deepEqual(
      stored.map((e) => e.id),
      [id],
      'stored once',
    );
  });

  test('herald dead list|show|redrive: the same through the CLI; a redrive without a target exits 2', async () => {
    const run = async (args: string[]) => {
      const p = spawnHerald(args, { HERALD_HUB_URL: base });
      let out = '';
      p.child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      return { code: await p.exited, out, err: p.stderr() };
    };
    const listed = await run(['dead', 'list', '--selector', 'shipping:*']);
    assert.equal(listed.code, 0, listed.err);
    assert.match(listed.out, /^\d+ {2}\S+ {2}[A-Z_]+ {2}"shipping\.parcel\.sent" {2}/);
    const id = listed.out.split(' ')[0] as string;
    const shown = await run(['dead', 'show', id]);
    assert.equal(JSON.parse(shown.out).id, id);
    const redriven = await run(['dead', 'redrive', id]);
    assert.equal(redriven.code, 0, redriven.err);
    assert.equal(redriven.out, 'redriven 1\n');
    assert.equal((await run(['dead', 'redrive'])).code, 2);
    assert.equal((await run(['dead', 'purge'])).code, 2);
  });

  test('purges: one by id; in bulk by code or selector; every one only with all=true', async () => {
    const items = (await list()).items;
    assert.equal((await call('DELETE', `/api/v1/dead-letters/${items[0]!.id}`)).status, 204);
    assert.equal((await call('DELETE', `/api/v1/dead-letters/${items[0]!.id}`)).status, 404);
    assert.equal((await call('DELETE', '/api/v1/dead-letters')).status, 400);
    assert.equal((await call('DELETE', '/api/v1/dead-letters?code=HANDLER_FAILED')).json().deleted, 1);
    const left = (await list()).items.length;
    assert.equal((await call('DELETE', '/api/v1/dead-letters?all=true')).json().deleted, left);
    assert.equal((await list()).items.length, 0);
  });
});
