import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createPublisher, createSubscriber } from '@herald/client';
import { createEvent, EVENTS_EXCHANGE, INGEST_EXCHANGE, toAmqp } from '@herald/core';
import { type RouterHub, spawnHerald, startRouterHub, type VhostPermissions, waitFor } from '@herald/testing';
import amqp from 'amqplib';
import { openSse } from './api/subscriptions-test-kit.ts';

// The trust boundary of docs/hub.md: the hub runs as a RabbitMQ user of its own, limited to the
// `herald.*` resources; a service runs with the permissions docs/hub.md gives it, which let it
// publish to herald.ingest and read herald.events through its own queues, never publish to
// herald.events. Should something publish there all the same (a deployment where everyone is
// guest), a subscription never takes an offset beyond the log's head from it. And no password of
// the hub's URLs ever shows in what it prints.

/** docs/hub.md, "RabbitMQ permissions": the hub's user. */
const HUB: VhostPermissions = { configure: '^herald\\.', write: '^herald\\.', read: '^herald\\.' };
/** docs/hub.md, "RabbitMQ permissions": a service's user (its own queues: any name outside herald.*). */
const SERVICE: VhostPermissions = {
  configure: '^(?!herald\\.).*',
  write: '^(herald\\.ingest|herald\\.dead|(?!herald\\.).*)$',
  read: '^(herald\\.events|(?!herald\\.).*)$',
};

let fx: RouterHub;
let hubUser: { user: string; password: string; url: string };
let service: { user: string; password: string; url: string };

before(async () => {
  fx = await startRouterHub('trust', async (vhost) => {
    hubUser = await vhost.addUser('hub', HUB);
    return { HERALD_AMQP_URL: hubUser.url };
  });
  service = await fx.vhost.addUser('billing', SERVICE);
});

after(async () => {
  await fx?.close();
});

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${fx.http}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

describe('RabbitMQ permissions (docs/hub.md)', () => {
  test('the hub runs on its own herald.* permissions; a service publishes to herald.ingest and receives through its own queue', async () => {
    const got: string[] = [];
    const sub = createSubscriber({ url: service.url, selector: 'billing:*', queue: 'billing.audit' }, (e) => {
      got.push(e.id);
    });
    const pub = createPublisher({ url: service.url, sender: 'billing' });
    try {
      assert.equal(await sub.queue, 'billing.audit');
      const receipt = await pub.publish('invoice.paid', { n: 1 });
      await waitFor('the event through the hub to the service queue', () => got.includes(receipt.id), 10_000);
      assert.equal((await api('GET', `/api/v1/events/by-id/${receipt.id}`)).status, 200);
    } finally {
      await pub.close();
      await sub.close();
    }
  });

  test('a service cannot publish to herald.events: RabbitMQ refuses it (403 ACCESS_REFUSED)', async () => {
    const conn = await amqp.connect(service.url);
    try {
      const ch = await conn.createConfirmChannel();
      const closed = new Promise<Error>((resolve) => ch.on('error', resolve));
      const event = createEvent({ sender: 'billing', type: 'invoice.paid', data: {} });
      const { routingKey, content, properties } = toAmqp(event, { offset: 1n });
      ch.publish(EVENTS_EXCHANGE, routingKey, content, properties);
      const err = await closed;
      assert.match(err.message, /ACCESS_REFUSED|403/);
      // ...while the same user may publish to herald.ingest.
      const ok = await conn.createConfirmChannel();
      const ingest = toAmqp(createEvent({ sender: 'billing', type: 'invoice.paid', data: {} }));
      ok.publish(INGEST_EXCHANGE, ingest.routingKey, ingest.content, ingest.properties);
      await ok.waitForConfirms();
    } finally {
      await conn.close().catch(() => undefined);
    }
  });
});

test('a forged x-herald-offset beyond the log head never reaches a subscription nor moves it', async () => {
  assert.equal((await api('POST', '/api/v1/subscriptions', { name: 'ledger', selector: 'ledger:*', start: 'new' })).status, 201);
  const sse = await openSse(`${fx.http}/api/v1/subscriptions/ledger/stream`);
  // Someone with write access to herald.events (here the vhost's admin, as in a deployment where
  // every service is guest) publishes events the log does not have.
  const admin = await amqp.connect(fx.vhost.url);
  const ids = (events: SseEvents) => events.map((e) => (e.data as unknown as { id: string }).id);
  type SseEvents = typeof sse.events;
  try {
    const pub = createPublisher({ url: service.url, sender: 'ledger' });
    const first = await pub.publish('entry.posted', { n: 1 });
    await waitFor('the first event live', () => ids(sse.events).includes(first.id), 10_000);
    const head = BigInt((sse.events.at(-1) as SseEvents[number]).data.offset);

    const ch = await admin.createConfirmChannel();
    // A queue of the test's own on herald.events: it shows the forged messages were routed there.
    const probe = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(probe.queue, EVENTS_EXCHANGE, 'ledger.#');
    const forged = [head + 1n, head + 5n].map((offset) => {
      const event = createEvent({ sender: 'ledger', type: 'entry.posted', data: { forged: true } });
      const m = toAmqp(event, { offset });
      ch.publish(EVENTS_EXCHANGE, m.routingKey, m.content, m.properties);
      return event.id;
    });
    await ch.waitForConfirms();
    // Subscriptions are fed from the log, in the hub's memory, not from herald.events: whatever
    // reaches that exchange reaches no subscription.
    await waitFor('the forged messages routed on herald.events', async () => (await ch.checkQueue(probe.queue)).messageCount >= 2, 10_000);

    const real = await pub.publish('entry.posted', { n: 2 });
    await pub.close();
    await waitFor('the real next event live', () => ids(sse.events).includes(real.id), 10_000);
    assert.deepEqual(ids(sse.events), [first.id, real.id]);
    assert.equal((sse.events.at(-1) as SseEvents[number]).data.offset, String(head + 1n), 'the real event has the next offset');
    for (const id of forged) assert.ok(!ids(sse.events).includes(id));
  } finally {
    await sse.close();
    await admin.close().catch(() => undefined);
  }
});

describe('secrets', () => {
  test('the hub never prints the password of its AMQP URL', () => {
    const out = fx.hub.output();
    assert.match(out, /"msg":"hub running"/);
    assert.ok(!out.includes(hubUser.password), 'the hub password is not in the output');
    assert.ok(out.includes(`${encodeURIComponent(hubUser.user)}:***@`), 'the start line shows the URL, redacted');
  });

  test('a wrong password, a bad setting: the error line names the URL without its password', async () => {
    const wrong = new URL(hubUser.url);
    wrong.password = 'not-the-password-42';
    const refused = spawnHerald(['hub'], { HERALD_AMQP_URL: wrong.href, HERALD_DATABASE_URL: fx.db.url, HERALD_HTTP_PORT: '0' });
    assert.equal(await refused.exited, 1);
    assert.match(refused.stderr(), /check the user and password/);
    assert.ok(!refused.output().includes('not-the-password-42'), refused.output());

    const bad = spawnHerald(['hub'], {
      HERALD_AMQP_URL: `http://admin:s3cret-pw@host/`,
      HERALD_DATABASE_URL: 'postgres://app:s3cret-db@db:port/x',
    });
    assert.equal(await bad.exited, 2);
    assert.match(bad.stderr(), /invalid HERALD_AMQP_URL "http:\/\/admin:\*\*\*@host\/"/);
    assert.ok(!bad.output().includes('s3cret'), bad.output());
  });
});
