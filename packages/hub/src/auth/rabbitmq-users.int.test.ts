import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DEAD_EXCHANGE, ErrorCodes, EVENTS_EXCHANGE, HeraldError, INGEST_EXCHANGE, parseSelector } from '@herald/core';
import { createTestVhost, managementUrl, type TestVhost, waitFor } from '@herald/testing';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { declareRouterQueue, declareShared } from '../ingest/topology.ts';
import { type AmqpCredentials, createRabbitUsers, type RabbitUsers } from './rabbitmq-users.ts';
import type { Role } from './types.ts';

/** How an AMQP operation ended: done, or refused with RabbitMQ's reply code (403 ACCESS_REFUSED…). */
type Outcome = { ok: true } | { ok: false; code: unknown; message: string };

/** Fails the test unless `outcome` is a 403 ACCESS_REFUSED. */
function assertRefused(outcome: Outcome, what: string): void {
  assert.equal(outcome.ok, false, `${what} must be refused`);
  if (outcome.ok) return;
  assert.equal(outcome.code, 403, `${what}: ${outcome.message}`);
  assert.match(outcome.message, /ACCESS_REFUSED/, what);
}

function assertOk(outcome: Outcome, what: string): void {
  assert.deepEqual(outcome, { ok: true }, what);
}

/**
 * Runs `fn` on a channel of its own. A refusal closes the channel (RabbitMQ's channel.close with
 * its reply code), which rejects `fn`'s pending operation: that reply is the outcome.
 */
async function onChannel(conn: ChannelModel, fn: (ch: Channel) => Promise<unknown>): Promise<Outcome> {
  const ch = await conn.createChannel();
  let closedWith: { code: unknown; message: string } | undefined;
  ch.on('error', (err: Error & { code?: unknown }) => {
    closedWith = { code: err.code, message: err.message };
  });
  try {
    await fn(ch);
    await ch.close();
    return { ok: true };
  } catch (err) {
    const e = err as Error & { code?: unknown };
    return { ok: false, code: closedWith?.code ?? e.code, message: closedWith?.message ?? e.message };
  }
}

/**
 * Publishes one message on a confirm channel of its own. `ok` once RabbitMQ confirmed it (acked);
 * a refused publish has no answer of its own: RabbitMQ closes the channel, the outcome is its reply.
 */
async function publish(conn: ChannelModel, exchange: string, routingKey: string): Promise<Outcome> {
  const ch = await conn.createConfirmChannel();
  return new Promise<Outcome>((resolve) => {
    let settled = false;
    const settle = (o: Outcome) => {
      if (settled) return;
      settled = true;
      resolve(o);
    };
    ch.on('error', (err: Error & { code?: unknown }) => settle({ ok: false, code: err.code, message: err.message }));
    ch.on('close', () => settle({ ok: false, code: undefined, message: 'channel closed without an error' }));
    ch.publish(exchange, routingKey, Buffer.from('{}'), { persistent: true }, (err) => {
      if (err) return; // the close above says why
      settle({ ok: true });
      ch.close().catch(() => undefined);
    });
  });
}

/** Takes every message out of `queue` and answers how many there were (basic.get: exact, no stats lag). */
async function drain(ch: Channel, queue: string): Promise<number> {
  let n = 0;
  while ((await ch.get(queue, { noAck: true })) !== false) n++;
  return n;
}

describe('RabbitMQ users for Herald users (management API, real RabbitMQ)', () => {
  let vhost: TestVhost;
  let users: RabbitUsers;
  let admin: ChannelModel;
  let adminCh: Channel;
  const run = randomBytes(4).toString('hex');
  const made: string[] = [];
  /** A Herald user name unique to this run; removed in after(). */
  const nameOf = (what: string) => {
    const name = `t${run}-${what}`;
    made.push(name);
    return name;
  };
  const open: ChannelModel[] = [];
  /** Connects as `creds` to the test vhost, as a service would (noDelay). */
  const connectAs = async (creds: AmqpCredentials): Promise<ChannelModel> => {
    const u = new URL(vhost.url);
    u.username = encodeURIComponent(creds.username);
    u.password = encodeURIComponent(creds.password);
    const conn = await connect(u.href, { noDelay: true });
    conn.on('error', () => undefined);
    open.push(conn);
    return conn;
  };
  /** Resolves when `conn` is closed by the other side; rejects after 10 s. */
  const closedByServer = (conn: ChannelModel, what: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
      conn.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });

  before(async () => {
    vhost = await createTestVhost('rmq-users');
    users = createRabbitUsers(managementUrl, { vhost: vhost.name });
    admin = await connect(vhost.url, { noDelay: true });
    adminCh = await admin.createChannel();
    await declareShared(adminCh);
    await declareRouterQueue(adminCh);
    // What reaches herald.ingest, counted by a queue of the admin's.
    await adminCh.assertQueue('seen.ingest', { durable: false });
    await adminCh.bindQueue('seen.ingest', INGEST_EXCHANGE, '#');
  });

  after(async () => {
    for (const c of open) await c.close().catch(() => undefined);
    for (const name of made) await users.remove(name).catch(() => undefined);
    await admin?.close().catch(() => undefined);
    await vhost?.delete();
  });

  test('check(): guest is an administrator and the vhost exists', async () => {
    await users.check();
  });

  test('a publisher publishes as its senders only; never to herald.events; update() moves it; remove() locks it out', async () => {
    const name = nameOf('pub');
    const creds = await users.create(name, [{ role: 'publisher', senders: ['billing'] }]);
    assert.equal(creds.username, `herald-${name}`);
    assert.equal(users.usernameOf(name), creds.username);
    assert.match(creds.password, /^[A-Za-z0-9_-]{32}$/, '24 random bytes, base64url');

    const conn = await connectAs(creds);
    assertOk(await publish(conn, INGEST_EXCHANGE, 'billing.invoice.paid'), 'its own sender');
    assertRefused(await publish(conn, INGEST_EXCHANGE, 'shipping.parcel.sent'), 'another sender');
    assertRefused(await publish(conn, INGEST_EXCHANGE, 'billingx.invoice.paid'), 'a sender its sender is a prefix of');
    assertRefused(await publish(conn, EVENTS_EXCHANGE, 'billing.invoice.paid'), 'herald.events');
    assertRefused(await onChannel(conn, (ch) => ch.assertQueue('mine', { durable: false })), 'declaring a queue');
    assertRefused(await onChannel(conn, (ch) => ch.consume('seen.ingest', () => undefined)), 'consuming');
    // Confirmed means routed: the accepted publish is in the counting queue by now, the refused ones never.
    assert.equal(await drain(adminCh, 'seen.ingest'), 1, 'exactly the accepted publish reached herald.ingest');

    // Same permissions again: nothing changes, the connection stays.
    await users.update(name, [{ role: 'publisher', senders: ['billing'] }]);
    assertOk(await publish(conn, INGEST_EXCHANGE, 'billing.invoice.paid'), 'unchanged permissions keep the connection');

    // RabbitMQ caches what a channel may do: changed permissions close the connections.
    const closed = closedByServer(conn, 'update() to close the open connection');
    await users.update(name, [{ role: 'publisher', senders: ['shipping'] }]);
    await closed;
    const again = await connectAs(creds);
    assertOk(await publish(again, INGEST_EXCHANGE, 'shipping.parcel.sent'), 'the new sender, same password');
    assert.equal(await drain(adminCh, 'seen.ingest'), 2, 'the unchanged-permissions publish and the new sender');
    assertRefused(await publish(again, INGEST_EXCHANGE, 'billing.invoice.paid'), 'the old sender');

    const gone = closedByServer(again, 'remove() to close the open connection');
    await users.remove(name);
    await gone;
    await assert.rejects(connectAs(creds), /ACCESS_REFUSED|auth|403/i, 'the old credentials no longer log in');
    await users.remove(name); // absent: no error
  });

  test('a subscriber declares, binds (with its selectors’ keys only) and consumes queues named after it only; it may dead-letter, not publish', async () => {
    const name = nameOf('sub');
    const roles: Role[] = [{ role: 'subscriber', selector: parseSelector('billing:*') }];
    const creds = await users.create(name, roles);
    const conn = await connectAs(creds);
    const queue = `herald-${name}.invoices`;

    const ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: false });
    await ch.bindQueue(queue, EVENTS_EXCHANGE, 'billing.#');
    const got: string[] = [];
    await ch.consume(queue, (m) => m && got.push(m.fields.routingKey), { noAck: true });
    adminCh.publish(EVENTS_EXCHANGE, 'billing.invoice.paid', Buffer.from('{}'));
    await waitFor('the event on its own queue', () => got.includes('billing.invoice.paid'), 10_000, 20);

    // Queues of others: `herald-<name>.b.q` belongs to Herald user `<name>.b`, not to `<name>`.
    const theirs = [`herald-${name}.b.q`, `herald-${name}x.q`, 'herald.ingest', 'seen.ingest'];
    for (const q of theirs.slice(0, 2)) await adminCh.assertQueue(q, { durable: false });
    for (const q of theirs) {
      assertRefused(await onChannel(conn, (c) => c.consume(q, () => undefined)), `consuming ${q}`);
      assertRefused(await onChannel(conn, (c) => c.bindQueue(q, EVENTS_EXCHANGE, '#')), `binding ${q}`);
    }
    assertRefused(await onChannel(conn, (c) => c.assertQueue(`herald-${name}.b.q`, { durable: false })), 'declaring a queue of another');
    assertRefused(await onChannel(conn, (c) => c.assertQueue('mine', { durable: false })), 'declaring a queue not named after it');
    assertRefused(await onChannel(conn, (c) => c.assertQueue('', { exclusive: true })), 'a server-named queue');
    assertRefused(await onChannel(conn, (c) => c.bindQueue(queue, INGEST_EXCHANGE, '#')), 'binding its queue to herald.ingest');
    // Its own queue, but beyond its selectors: RabbitMQ's topic permission admits their binding keys and narrower ones only.
    assertOk(await onChannel(conn, (c) => c.bindQueue(queue, EVENTS_EXCHANGE, 'billing.invoice.*')), 'binding a narrower key');
    for (const key of ['#', 'shipping.#', '*.#', '*.invoice.paid'])
      assertRefused(
        await onChannel(conn, (c) => c.bindQueue(queue, EVENTS_EXCHANGE, key)),
        `binding its queue to herald.events with ${key}`,
      );
    assertRefused(await publish(conn, INGEST_EXCHANGE, 'billing.invoice.paid'), 'publishing without a publisher role');
    assertRefused(await publish(conn, EVENTS_EXCHANGE, 'billing.invoice.paid'), 'publishing to herald.events');
    assertOk(await publish(conn, DEAD_EXCHANGE, 'billing.invoice.paid'), 'a dead letter to herald.dead, as the SDK subscriber sends');
    assertOk(await onChannel(conn, (c) => c.deleteQueue(queue)), 'deleting its own queue');
  });

  test('roles that narrow: bindings the subscriber may no longer make are deleted, so its durable queue stops filling', async () => {
    const name = nameOf('narrow');
    const creds = await users.create(name, [{ role: 'subscriber', selector: parseSelector('billing:*') }]);
    const conn = await connectAs(creds);
    const queue = `herald-${name}.keep`;
    assertOk(
      await onChannel(conn, async (c) => {
        await c.assertQueue(queue, { durable: true });
        await c.bindQueue(queue, EVENTS_EXCHANGE, 'billing.#');
        await c.bindQueue(queue, EVENTS_EXCHANGE, 'billing.invoice.paid');
      }),
      'binding inside its selector',
    );
    const closed = closedByServer(conn, 'the connection closed on the role change');
    await users.update(name, [{ role: 'subscriber', selector: parseSelector('billing:invoice.paid') }]);
    await closed;
    adminCh.publish(EVENTS_EXCHANGE, 'billing.parcel.sent', Buffer.from('{}'));
    adminCh.publish(EVENTS_EXCHANGE, 'billing.invoice.paid', Buffer.from('{}'));
    // Published in order on one channel, so routed in order: had billing.parcel.sent reached the queue, it would come first.
    const keys: string[] = [];
    await waitFor(
      'the allowed event in the queue',
      async () => {
        const m = await adminCh.get(queue, { noAck: true });
        if (m) keys.push(m.fields.routingKey);
        return keys.includes('billing.invoice.paid');
      },
      10_000,
      20,
    );
    assert.deepEqual(keys, ['billing.invoice.paid'], 'billing.parcel.sent no longer reaches it');
    await adminCh.deleteQueue(queue);
  });

  test('publisher and subscriber at once: the union of both; admin adds nothing over AMQP', async () => {
    const name = nameOf('both');
    const creds = await users.create(name, [
      { role: 'admin' },
      { role: 'publisher', senders: ['crm', 'auth'] },
      { role: 'subscriber', selector: parseSelector('*:*') },
    ]);
    const conn = await connectAs(creds);
    assertOk(await publish(conn, INGEST_EXCHANGE, 'crm.user.created'), 'sender crm');
    assertOk(await publish(conn, INGEST_EXCHANGE, 'auth.user.login'), 'sender auth');
    assertRefused(await publish(conn, INGEST_EXCHANGE, 'billing.invoice.paid'), 'sender billing');
    assertRefused(await publish(conn, EVENTS_EXCHANGE, 'crm.user.created'), 'herald.events');
    assertOk(
      await onChannel(conn, async (c) => {
        await c.assertQueue(`herald-${name}.all`, { durable: false });
        await c.bindQueue(`herald-${name}.all`, EVENTS_EXCHANGE, '#');
        await c.consume(`herald-${name}.all`, () => undefined);
      }),
      'its own queue',
    );
    assert.equal(await drain(adminCh, 'seen.ingest'), 2, 'both accepted publishes, nothing else');
    assertRefused(await onChannel(conn, (c) => c.deleteExchange(INGEST_EXCHANGE)), 'deleting herald.ingest');

    const adminOnly = await users.create(nameOf('admin'), [{ role: 'admin' }]);
    const a = await connectAs(adminOnly);
    assertRefused(await publish(a, INGEST_EXCHANGE, 'crm.user.created'), 'an admin publishing');
    assertRefused(await onChannel(a, (c) => c.assertQueue(`${adminOnly.username}.q`, { durable: false })), 'an admin declaring');
  });

  test('create() of an existing user: a new password, and the old one no longer logs in', async () => {
    const name = nameOf('again');
    const first = await users.create(name, [{ role: 'publisher', senders: ['billing'] }]);
    const conn = await connectAs(first);
    const closed = closedByServer(conn, 'the connection with the old password to close');
    const second = await users.create(name, [{ role: 'publisher', senders: ['billing'] }]);
    assert.notEqual(second.password, first.password);
    await closed;
    await assert.rejects(connectAs(first), /ACCESS_REFUSED|auth|403/i);
    assertOk(await publish(await connectAs(second), INGEST_EXCHANGE, 'billing.x'), 'the new password');
  });

  test('errors: wrong admin credentials are INVALID_CONFIG, an unreachable API UNAVAILABLE; no password in either', async () => {
    const wrong = new URL(managementUrl);
    wrong.password = 'not-the-password-42';
    const bad = createRabbitUsers(wrong.href, { vhost: vhost.name });
    const refused = await bad.create(nameOf('never'), [{ role: 'admin' }]).then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(refused instanceof HeraldError);
    assert.equal(refused.code, ErrorCodes.INVALID_CONFIG);
    assert.match(refused.message, /401/);
    assert.ok(!refused.message.includes('not-the-password-42'), refused.message);
    assert.ok(refused.message.includes('***'), refused.message);
    assert.ok(!refused.message.includes('\n'));

    const nowhere = createRabbitUsers('http://admin:hunter2secret@127.0.0.1:1', { vhost: vhost.name, timeoutMs: 2000 });
    const unreachable = await nowhere.remove('x').then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(unreachable instanceof HeraldError);
    assert.equal(unreachable.code, ErrorCodes.UNAVAILABLE);
    assert.match(unreachable.message, /127\.0\.0\.1:1/);
    assert.ok(!unreachable.message.includes('hunter2secret'), unreachable.message);
    assert.equal(unreachable.cause, undefined, 'no cause that could hold the request');

    const noVhost = createRabbitUsers(managementUrl, { vhost: `${vhost.name}-missing` });
    await assert.rejects(noVhost.create(nameOf('novhost'), [{ role: 'admin' }]), (err: unknown) => {
      assert.ok(err instanceof HeraldError);
      assert.equal(err.code, ErrorCodes.INVALID_CONFIG);
      assert.match(err.message, /vhost/);
      return true;
    });
    await assert.rejects(
      users.update(nameOf('absent'), []),
      (err: unknown) => err instanceof HeraldError && err.code === ErrorCodes.NOT_FOUND,
    );
  });
});
