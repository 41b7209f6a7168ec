// /api/v1/dead-letters against a real hub process (router mode, PostgreSQL, RabbitMQ): poison
// messages become dead letters (source hub, one attempt) one can list by selector, code and source
// and read whole; an SDK subscriber whose handler always throws sends its dead letter to
// herald.dead, and the hub keeps it (source subscriber, its attempts, first and last failure and
// queue), once; a redrive of the hub's own to a queue delivers the bytes and properties as they
// were; to herald.ingest a good event is stored once however often it is re-sent; a subscriber's is
// re-sent as its logged event to its queue; one that fails again comes back as a new dead letter;
// purges need a filter or all=true.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createPublisher, createSubscriber } from '@herald/client';
import { Headers, INGEST_EXCHANGE } from '@herald/core';
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
  type Item = {
    id: string;
    at: string;
    source: string;
    queue: string | null;
    attempts: number | null;
    firstFailedAt: string;
    lastFailedAt: string;
    reason: string;
    code: string;
    exchange: string;
    routingKey: string;
    messageId: string | null;
    redrives: number;
  };
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
    for (const l of all) {
      assert.deepEqual([l.source, l.queue, l.attempts], ['hub', null, 1], 'ingest tried it once');
      assert.equal(l.firstFailedAt, l.at);
      assert.equal(l.lastFailedAt, l.at);
    }
    assert.equal((await list('?source=hub')).items.length, 2);
    assert.equal((await list('?source=subscriber')).items.length, 0);
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
    for (const bad of ['?selector=nocolon', '?code=lower', '?after=-1', '?limit=0', '?limit=1001', '?source=other', '?code=A%00B'])
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

  test('a good event among the dead letters: redriven twice, stored once with its id', async () => {
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

  test("an SDK subscriber's dead letter: kept by the hub with its attempts, failure times and queue; inspected; redriven as its logged event to its queue (which gets it each time; the log holds it once); purged", async () => {
    const queue = `orders-audit-${process.pid}`;
    const tries: number[] = [];
    const sub = createSubscriber({ url: vhost.url, selector: 'orders:*', queue, maxAttempts: 3, retryDelayMs: 150 }, () => {
      tries.push(Date.now());
      throw new Error('the handler always fails');
    });
    const pub = createPublisher({ url: vhost.url, sender: 'orders' });
    let letter: Item | undefined;
    let eventId: string;
    let secondId: string;
    try {
      assert.equal(await sub.queue, queue);
      eventId = (await pub.publish('order.placed', { n: 1 })).id;
      secondId = (await pub.publish('order.cancelled', { n: 2 })).id;
      await waitFor(
        "the subscriber's dead letters kept",
        async () => {
          const items = (await list('?source=subscriber')).items;
          letter = items.find((l) => l.messageId === eventId);
          return letter !== undefined && items.some((l) => l.messageId === secondId);
        },
        30_000,
        100,
      );
    } finally {
      await sub.close();
      await pub.close();
    }
    const l = letter as Item;
    assert.equal(tries.length, 6, 'three attempts each');
    assert.deepEqual(
      [l.source, l.queue, l.attempts, l.code, l.reason, l.exchange, l.routingKey],
      ['subscriber', queue, 3, 'HANDLER_FAILED', 'the handler always fails', 'herald.events', 'orders.order.placed'],
    );
    const first = Date.parse(l.firstFailedAt);
    const last = Date.parse(l.lastFailedAt);
    // Ordered: the first event's three attempts come before the second's.
    assert.ok(Math.abs(first - (tries[0] as number)) < 50, 'the first failure, as the subscriber saw it');
    assert.ok(Math.abs(last - (tries[2] as number)) < 50, 'the last failure');
    assert.ok(last - first >= 2 * 150, 'two retry delays apart');
    assert.equal(
      (await list('?source=subscriber')).items.length,
      2,
      "each kept once; the hub's own dead letters, which reach herald.dead too, are not kept again",
    );
    assert.equal((await list('?source=subscriber&selector=orders:order.placed&code=HANDLER_FAILED')).items[0]?.id, l.id);

    const whole = (await call('GET', `/api/v1/dead-letters/${l.id}`)).json();
    assert.equal(whole.bodyText, '{"n":1}');
    const headers = (whole.properties as { headers: Record<string, unknown> }).headers;
    assert.equal(headers[Headers.ATTEMPTS], 3);
    assert.equal(headers[Headers.ORIGINAL_QUEUE], queue);
    assert.equal(typeof headers[Headers.OFFSET], 'string', 'delivered by the hub, with its offset');

    // Back to its queue, twice without a queue named (the queue it died on) and twice with it: the
    // queue gets the logged event each time, with its id, routing key and the redrive's mark.
    const conn = await connect(vhost.url, { noDelay: true });
    const ch = await conn.createChannel();
    await ch.purgeQueue(queue);
    for (let i = 0; i < 2; i++) assert.equal((await call('POST', `/api/v1/dead-letters/${l.id}/redrive`)).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await call('POST', `/api/v1/dead-letters/${l.id}/redrive`, { queue })).status, 200);
    const got: { id: unknown; key: string; redriven: unknown; body: string }[] = [];
    await waitFor(
      'all four in the queue',
      async () => {
        const m = await ch.get(queue, { noAck: true });
        if (m)
          got.push({
            id: m.properties.messageId,
            key: m.fields.routingKey,
            redriven: m.properties.headers?.['x-herald-redriven'],
            body: m.content.toString(),
          });
        return got.length === 4;
      },
      10_000,
      50,
    );
    const each = { id: eventId, key: 'orders.order.placed', redriven: l.id, body: '{"n":1}' };
    assert.deepEqual(got, [each, each, each, each]);
    await ch.deleteQueue(queue);
    await conn.close();
    assert.equal((await list('?source=subscriber')).items.find((x) => x.id === l.id)?.redrives, 4);
    const again = (await call('GET', '/api/v1/events?selector=orders:order.placed')).json() as { events: unknown[] };
    assert.equal(again.events.length, 1, 'still once in the log');

    // Purged: one by id, then the rest of the source in bulk.
    assert.equal((await call('DELETE', `/api/v1/dead-letters/${l.id}`)).status, 204);
    assert.equal((await call('GET', `/api/v1/dead-letters/${l.id}`)).status, 404);
    assert.equal((await call('DELETE', '/api/v1/dead-letters?source=subscriber')).json().deleted, 1);
    assert.equal((await list('?source=subscriber')).items.length, 0);
  });

  test("a message forged on herald.dead is kept, but never re-sent to herald.ingest as the hub's (its event is not in the log)", async () => {
    const [forged] = makeEvents(1, { senders: ['billing'], types: ['invoice.paid'] });
    const id = String(forged!.options!.messageId);
    const raw = await createRawPublisher(vhost.url);
    const headers = { [Headers.DEAD_REASON]: 'forged', [Headers.DEAD_CODE]: 'HANDLER_FAILED' };
    assert.ok(await raw.publish('herald.dead', { ...forged!, options: { ...forged!.options, headers } }));
    await raw.close();
    let letter: Item | undefined;
    await waitFor(
      'the forged one kept',
      async () => {
        letter = (await list('?source=subscriber')).items.find((l) => l.messageId === id);
        return letter !== undefined;
      },
      30_000,
      100,
    );
    const one = await call('POST', `/api/v1/dead-letters/${letter!.id}/redrive`);
    assert.equal(one.status, 409, one.text);
    assert.match(String(one.json().detail), /not in the log/);
    const { upTo: _upTo, ...bulk } = (await call('POST', '/api/v1/dead-letters/redrive', { source: 'subscriber' })).json();
    assert.deepEqual(bulk, { redriven: 0, skipped: 1, next: null });
    assert.equal((await call('GET', `/api/v1/events/by-id/${id}`)).status, 404);
    assert.equal((await call('DELETE', '/api/v1/dead-letters?source=subscriber')).json().deleted, 1);
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
    assert.match(listed.out, /^\d+ {2}\S+ {2}[A-Z_]+ {2}"shipping\.parcel\.sent" {2}hub {2}1 attempt {2}/);
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
