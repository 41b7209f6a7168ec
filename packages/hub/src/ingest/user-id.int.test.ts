import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DEAD_QUEUE, ErrorCodes, EVENTS_EXCHANGE, Headers, INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  managementUrl,
  type RawMessage,
  type RawPublisher,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import { type Channel, type ChannelModel, type ConsumeMessage, connect, type Message } from 'amqplib';
import { pino } from 'pino';
import { createRabbitUsers, createSenderCheck, type RabbitUsers } from '../auth/rabbitmq-users.ts';
import type { Role } from '../auth/types.ts';
import { normalizeConfig } from '../config/index.ts';
import { EventPath } from '../event-path.ts';
import { openStore } from '../store/index.ts';
import type { DeadLetter, Store } from '../store/types.ts';
import type { Ingest } from './ingest.ts';

/** How soon the good event after a refused one must be stored and forwarded. */
const FLOW_MS = 5000;

function event(routingKey: string, userId?: string): RawMessage {
  return {
    routingKey,
    content: Buffer.from('{"ok":true}'),
    options: { messageId: randomUUID(), contentType: 'application/json', ...(userId === undefined ? {} : { userId }) },
  };
}
const idOf = (m: RawMessage) => String(m.options?.messageId);

describe('ingest checks user_id against the sender of the routing key (router mode, real RabbitMQ and PostgreSQL)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let store: Store;
  let ingest: Ingest;
  let path: EventPath;
  let users: RabbitUsers;
  /** A Herald-managed publisher, as RabbitMQ knows it: it may publish as billing and shipping. */
  let herald: RawPublisher;
  let heraldUser: string;
  /** guest: not a user the hub manages. */
  let guest: RawPublisher;
  let listener: ChannelModel;
  let seen: ConsumeMessage[];
  let ch: Channel;
  const name = `uid${randomBytes(4).toString('hex')}`;
  /**
   * The hub's view of its users, which the check reads: the Herald user may publish as billing
   * only. RabbitMQ still lets it publish as shipping too (a role narrowed in the store whose
   * RabbitMQ permissions were not updated yet, or a user changed by hand): the hub's check is
   * what refuses it then.
   */
  const roles = new Map<string, readonly Role[]>();

  before(async () => {
    vhost = await createTestVhost('user-id');
    db = await createTestDatabase('user-id');
    store = await openStore({ url: db.url });
    await store.migrate();
    assert.ok(await store.acquireWriterLease());
    users = createRabbitUsers(managementUrl, { vhost: vhost.name });
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode: 'router', httpPort: 0, grpcPort: 0 }, {});
    path = new EventPath({
      config,
      store,
      logger: pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' }),
      senderCheck: createSenderCheck((amqpUser) => roles.get(amqpUser)),
    });
    await path.start();
    ingest = path.ingest; // declares herald.ingest before the publisher's permissions name it

    const creds = await users.create(name, [{ role: 'publisher', senders: ['billing', 'shipping'] }]);
    heraldUser = creds.username;
    roles.set(heraldUser, [{ role: 'publisher', senders: ['billing'] }]);
    const u = new URL(vhost.url);
    u.username = encodeURIComponent(creds.username);
    u.password = encodeURIComponent(creds.password);
    herald = await createRawPublisher(u.href);
    guest = await createRawPublisher(vhost.url);

    listener = await connect(vhost.url);
    ch = await listener.createChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, EVENTS_EXCHANGE, '#');
    seen = [];
    await ch.consume(queue, (m) => m && seen.push(m), { noAck: true });
  });

  after(async () => {
    await listener?.close().catch(() => undefined);
    await herald?.close();
    await guest?.close();
    await path?.stop();
    await users?.remove(name).catch(() => undefined);
    await store?.close();
    await vhost?.delete();
    await db?.drop();
  });

  const forwarded = (m: RawMessage) => seen.some((s) => s.properties.messageId === idOf(m));

  async function deadLetterOf(m: RawMessage): Promise<DeadLetter> {
    let found: DeadLetter | undefined;
    await waitFor(`dead letter ${idOf(m)} stored`, async () => {
      found = (await store.listDeadLetters(1000)).find((l) => l.messageId === idOf(m));
      return found !== undefined;
    });
    return found as DeadLetter;
  }

  async function onDeadQueue(m: RawMessage): Promise<Message> {
    let found: Message | undefined;
    await waitFor(`dead letter ${idOf(m)} on ${DEAD_QUEUE}`, async () => {
      for (;;) {
        const got = await ch.get(DEAD_QUEUE, { noAck: true });
        if (got === false) return false;
        if (got.properties.messageId === idOf(m)) {
          found = got;
          return true;
        }
      }
    });
    return found as Message;
  }

  test('a managed user publishing as a sender it does not hold: a dead letter with the reason; the next good event flows', async () => {
    const spoofed = event('shipping.parcel.sent', heraldUser);
    const good = event('billing.invoice.paid', heraldUser);
    assert.ok(await herald.publish(INGEST_EXCHANGE, spoofed), 'RabbitMQ takes it: its permissions allow shipping');
    const started = Date.now();
    assert.ok(await herald.publish(INGEST_EXCHANGE, good));

    await waitFor('the good event forwarded to herald.events', () => forwarded(good), FLOW_MS, 20);
    assert.ok(Date.now() - started <= FLOW_MS);
    assert.ok(await store.getById(idOf(good)), 'the good event is stored');
    assert.equal(await store.getById(idOf(spoofed)), undefined, 'the spoofed one is not');
    assert.ok(!forwarded(spoofed), 'nor forwarded');

    const letter = await deadLetterOf(spoofed);
    assert.equal(letter.code, ErrorCodes.INVALID_EVENT);
    assert.equal(letter.reason, `user_id ${heraldUser} may not publish as sender shipping: its senders are billing`);
    assert.equal(letter.routingKey, 'shipping.parcel.sent');
    assert.equal(letter.exchange, INGEST_EXCHANGE);
    const onQueue = await onDeadQueue(spoofed);
    assert.equal(String(onQueue.properties.headers?.[Headers.DEAD_REASON]), letter.reason);
    assert.equal(
      onQueue.properties.userId,
      decodeURIComponent(new URL(vhost.url).username || 'guest'),
      "a dead letter never carries the publisher's user_id on: it carries the hub's own",
    );
  });

  test('what is not checked passes as before: no user_id, user_id of a user the hub does not manage', async () => {
    const noUserId = event('shipping.parcel.sent');
    const asGuest = event('crm.user.created', 'guest');
    assert.ok(await herald.publish(INGEST_EXCHANGE, noUserId));
    assert.ok(await guest.publish(INGEST_EXCHANGE, asGuest));
    await waitFor('both forwarded', () => forwarded(noUserId) && forwarded(asGuest), FLOW_MS, 20);
    assert.ok(await store.getById(idOf(noUserId)));
    assert.ok(await store.getById(idOf(asGuest)));
  });

  test('the check follows the hub’s users: once the user holds shipping, its shipping events are stored', async () => {
    roles.set(heraldUser, [{ role: 'publisher', senders: ['billing', 'shipping'] }]);
    const now = event('shipping.parcel.sent', heraldUser);
    assert.ok(await herald.publish(INGEST_EXCHANGE, now));
    await waitFor('forwarded', () => forwarded(now), FLOW_MS, 20);
    assert.equal(ingest.stats().dead, 1, 'only the spoofed event of the first test is dead');
  });
});
