// Redrives of subscribers' dead letters against a real hub process (router and archive mode,
// PostgreSQL, RabbitMQ): whoever may write to herald.dead can put a message there with a real
// event's id under another sender's routing key, other bytes and other headers; a redrive re-sends
// the event the log holds under that id, to the letter's queue or the queue given, never the
// letter's bytes, routing key or headers. A subscriber's dead letter with no queue to go to is a
// 409 (the log holds its event already); a bulk redrive sends each to its own queue and skips
// those it cannot. A bulk redrive goes on from a cursor, so newer dead letters are reached too.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DEAD_EXCHANGE, EVENTS_EXCHANGE, Headers, INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  restClient,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import { type Channel, type ChannelModel, connect, type GetMessage } from 'amqplib';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { MAX_BULK_REDRIVE } from './dead-letters.ts';

/** A bulk redrive's answer without its id bound. */
const counts = ({ upTo: _upTo, ...rest }: Record<string, unknown>) => rest;

type Letter = { id: string; source: string; messageId: string | null; queue: string | null; redrives: number };

for (const mode of ['router', 'archive'] as const) {
  describe(`redrives of subscribers' dead letters (e2e: ${mode} hub, PostgreSQL, RabbitMQ)`, () => {
    let vhost: TestVhost;
    let db: TestDatabase;
    let hub: HeraldProcess;
    let base: string;
    let conn: ChannelModel;
    let ch: Channel;
    const receiver = `receiver-${mode}`;
    const other = `other-${mode}`;
    let eventId: string;
    let offset: string;

    before(async () => {
      vhost = await createTestVhost(`redrive-${mode}`);
      db = await createTestDatabase(`redrive_${mode}`);
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      hub = await startHubProcess({
        HERALD_AMQP_URL: vhost.url,
        HERALD_DATABASE_URL: db.url,
        HERALD_MODE: mode,
        HERALD_HTTP_PORT: String(port),
      });
      conn = await connect(vhost.url, { noDelay: true });
      ch = await conn.createChannel();
      for (const q of [receiver, other]) await ch.assertQueue(q, { durable: false });
      await ch.bindQueue(receiver, EVENTS_EXCHANGE, '#');
      // The event the forgeries borrow the id of: published, stored, delivered once.
      eventId = randomUUID();
      const pub = await createRawPublisher(vhost.url);
      assert.ok(
        await pub.publish(INGEST_EXCHANGE, {
          routingKey: 'orders.order.placed',
          content: Buffer.from('{"n":1}'),
          options: { messageId: eventId, contentType: 'application/json', headers: { tenant: 'acme' } },
        }),
      );
      await pub.close();
      await waitFor('the event stored', async () => (await call('GET', `/api/v1/events/by-id/${eventId}`)).status === 200, 30_000);
      offset = String((await call('GET', `/api/v1/events/by-id/${eventId}`)).json().offset);
      const first = await take(receiver);
      assert.equal(first.properties.messageId, eventId);
    });
    after(async () => {
      await conn?.close().catch(() => undefined);
      await hub?.kill('SIGKILL');
      await vhost?.delete();
      await db?.drop();
    });

    const call = (method: string, path: string, body?: unknown) => restClient(base)(method, path, body);
    const letters = async () => ((await call('GET', '/api/v1/dead-letters?source=subscriber')).json() as { items: Letter[] }).items;
    /** The next message of `queue`, waited for. */
    const take = async (queue: string): Promise<GetMessage> => {
      let got: GetMessage | false = false;
      await waitFor(
        `a message in ${queue}`,
        async () => {
          got = await ch.get(queue, { noAck: true });
          return got !== false;
        },
        10_000,
        50,
      );
      return got as unknown as GetMessage;
    };
    /** Puts a forged dead letter of the event on herald.dead, as anyone who may write there can, and waits until it is kept. */
    const forge = async (mark: string, queue: string | undefined): Promise<Letter> => {
      const raw = await createRawPublisher(vhost.url);
      const headers: Record<string, unknown> = {
        [Headers.DEAD_REASON]: mark,
        [Headers.DEAD_CODE]: 'HANDLER_FAILED',
        [Headers.OFFSET]: '424242',
        [Headers.SUBJECT]: 'forged',
        tenant: 'evil',
      };
      if (queue !== undefined) headers[Headers.ORIGINAL_QUEUE] = queue;
      assert.ok(
        await raw.publish(DEAD_EXCHANGE, {
          routingKey: 'billing.invoice.paid',
          content: Buffer.from(`{"forged":"${mark}"}`),
          options: { messageId: eventId, appId: 'billing', type: 'invoice.paid', headers },
        }),
      );
      await raw.close();
      let letter: Letter | undefined;
      await waitFor(
        `the forged dead letter ${mark} kept`,
        async () => {
          const all = await letters();
          letter = all.find((l) => l.messageId === eventId && l.queue === (queue ?? null) && l.redrives === 0);
          return letter !== undefined;
        },
        30_000,
      );
      return letter as Letter;
    };
    /** The message is the logged event, as the hub forwards it, marked with the dead letter's id. */
    const assertLogged = (m: GetMessage, letterId: string) => {
      const h = m.properties.headers as Record<string, unknown>;
      assert.deepEqual(
        {
          body: m.content.toString(),
          routingKey: m.fields.routingKey,
          messageId: m.properties.messageId,
          appId: m.properties.appId,
          type: m.properties.type,
          tenant: h.tenant,
          offset: h[Headers.OFFSET],
          subject: h[Headers.SUBJECT],
          reason: h[Headers.DEAD_REASON],
          redriven: h['x-herald-redriven'],
        },
        {
          body: '{"n":1}',
          routingKey: 'orders.order.placed',
          messageId: eventId,
          appId: 'orders',
          type: 'order.placed',
          tenant: 'acme',
          offset,
          subject: undefined,
          reason: undefined,
          redriven: letterId,
        },
      );
    };

    test("a forged dead letter with a logged event's id: its queue, or the queue given, gets the logged event, never the forged bytes, routing key or headers", async () => {
      const forged = await forge('to-its-queue', receiver);
      const r = await call('POST', `/api/v1/dead-letters/${forged.id}/redrive`);
      assert.equal(r.status, 200, r.text);
      assertLogged(await take(receiver), forged.id);
      const r2 = await call('POST', `/api/v1/dead-letters/${forged.id}/redrive`, { queue: other });
      assert.equal(r2.status, 200, r2.text);
      assertLogged(await take(other), forged.id);
      assert.equal((await call('POST', `/api/v1/dead-letters/${forged.id}/redrive`, { queue: 'no-such-queue' })).status, 404);
      const billing = (await call('GET', '/api/v1/events?selector=billing:*')).json() as { events: unknown[] };
      assert.equal(billing.events.length, 0, 'nothing stored as billing');
    });

    test('no queue on the letter and none given: 409 (its event is in the log already); bulk re-sends each to its own queue, skipping those it cannot', async () => {
      const bare = await forge('no-queue', undefined);
      const r = await call('POST', `/api/v1/dead-letters/${bare.id}/redrive`);
      assert.equal(r.status, 409, r.text);
      assert.match(String(r.json().detail), /queue/);
      const r2 = await call('POST', `/api/v1/dead-letters/${bare.id}/redrive`, { queue: other });
      assert.equal(r2.status, 200, r2.text);
      assertLogged(await take(other), bare.id);
      const gone = await forge('queue-gone', 'gone-queue');
      assert.equal((await call('POST', `/api/v1/dead-letters/${gone.id}/redrive`)).status, 404);

      const withQueue = (await letters()).find((l) => l.queue === receiver) as Letter;
      // In bulk only with the queue named: the queue a letter names is as forgeable as the rest.
      const unnamed = await call('POST', '/api/v1/dead-letters/redrive', { source: 'subscriber' });
      assert.deepEqual(counts(unnamed.json()), { redriven: 0, skipped: 3, next: null }, unnamed.text);
      const bulk = await call('POST', '/api/v1/dead-letters/redrive', { source: 'subscriber', queue: receiver });
      assert.equal(bulk.status, 200, bulk.text);
      assert.deepEqual(counts(bulk.json()), { redriven: 1, skipped: 2, next: null });
      assertLogged(await take(receiver), withQueue.id);
      const billing = (await call('GET', '/api/v1/events?selector=billing:*')).json() as { events: unknown[] };
      assert.equal(billing.events.length, 0, 'nothing stored as billing');
    });

    if (mode === 'router')
      test(`a bulk redrive goes on from a cursor: ${MAX_BULK_REDRIVE} a call, then the rest`, async () => {
        const store: Store = await openStore({ url: db.url });
        try {
          // The hub's own dead letters of the logged event: re-sent to herald.ingest, each is a duplicate there.
          const letter = {
            reason: 'bulk',
            code: 'BULK_TEST',
            exchange: INGEST_EXCHANGE,
            routingKey: 'orders.order.placed',
            messageId: eventId,
            properties: { messageId: eventId, headers: {} },
            body: Buffer.from('{"n":1}'),
            at: Date.now(),
          };
          const total = MAX_BULK_REDRIVE + 1;
          for (let i = 0; i < total; i += 2000) await store.addDeadLetters(Array.from({ length: Math.min(2000, total - i) }, () => letter));
        } finally {
          await store.close();
        }
        const first = await call('POST', '/api/v1/dead-letters/redrive', { code: 'BULK_TEST' });
        assert.equal(first.status, 200, first.text);
        const a = first.json() as { redriven: number; skipped: number; next: string | null; upTo: string };
        assert.deepEqual([a.redriven, a.skipped], [MAX_BULK_REDRIVE, 0], first.text);
        assert.match(String(a.next), /^[0-9]+$/);
        const second = await call('POST', '/api/v1/dead-letters/redrive', { code: 'BULK_TEST', after: a.next, upTo: a.upTo });
        assert.equal(second.status, 200, second.text);
        assert.deepEqual(second.json(), { redriven: 1, skipped: 0, next: null, upTo: a.upTo });
        const last = (await call('GET', `/api/v1/dead-letters?code=BULK_TEST&after=${a.next}`)).json() as { items: Letter[] };
        assert.deepEqual(
          last.items.map((l) => l.redrives),
          [1],
          'the newest reached',
        );
        assert.equal((await call('POST', '/api/v1/dead-letters/redrive', { code: 'BULK_TEST', after: 'x' })).status, 400);
      });
  });
}
