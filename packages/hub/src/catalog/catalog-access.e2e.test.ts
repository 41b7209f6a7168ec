// The event catalog seen through the roles of a hub that requires authentication (hub process,
// RabbitMQ, PostgreSQL): a subscriber's pages, their `next` and its AsyncAPI document name only the
// types its selectors match, and show no producers or consumers (they name other users,
// subscriptions and exchanges); an admin sees them. The bounds answer 429 LIMIT_EXCEEDED.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';

const ADMIN_TOKEN = randomBytes(32).toString('base64url');
const run = randomBytes(3).toString('hex');

type Json = Record<string, unknown>;

describe('catalog access (e2e: hub process with authentication, PostgreSQL)', { timeout: 180_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: HeraldProcess;
  let base: string;
  let subscriber = '';
  const sub = `cat-watch-${run}`;

  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    return { status: res.status, text, json: () => JSON.parse(text) as Json };
  };
  const admin = (method: string, path: string, body?: unknown) => call(method, path, ADMIN_TOKEN, body);

  before(async () => {
    vhost = await createTestVhost('catalog-access');
    db = await createTestDatabase('catalog_access');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_HTTP_PORT: String(port),
      HERALD_MODE: 'router',
      HERALD_AUTH: 'required',
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    const user = `reader-${run}`;
    assert.equal(
      (await admin('POST', '/api/v1/users', { name: user, roles: [{ role: 'subscriber', selector: 'billing:*' }] })).status,
      201,
    );
    const t = await admin('POST', `/api/v1/users/${user}/tokens`, { name: 'e2e' });
    assert.equal(t.status, 201, t.text);
    subscriber = t.json().token as string;
    // Sorted by sender then type, hidden types come first, between and last.
    for (const [sender, type] of [
      ['alpha', 'secret.one'],
      ['billing', 'a.paid'],
      ['billing', 'b.paid'],
      ['billing', 'c.paid'],
      ['zulu', 'secret.two'],
    ])
      assert.equal((await admin('PUT', `/api/v1/catalog/${sender}/${type}`, { schema: { type: 'object' } })).status, 201);
    assert.equal((await admin('POST', '/api/v1/subscriptions', { name: sub, selector: 'billing:*' })).status, 201);
    const published = await admin('POST', '/api/v1/events', { sender: 'billing', type: 'a.paid', data: { n: 1 } });
    assert.ok(published.status < 300, published.text);
    await waitFor(
      'the producer and consumer observed',
      async () => {
        const t = (await admin('GET', '/api/v1/catalog/billing/a.paid')).json();
        return (t.consumers as unknown[] | undefined)?.length === 1 && (t.producers as unknown[] | undefined)?.length === 1;
      },
      30_000,
      250,
    );
  });

  after(async () => {
    await hub?.kill('SIGKILL');
    await db?.drop();
    await vhost?.delete();
  });

  test('a subscriber pages through its types only: every next is a type it was shown, never a hidden one', async () => {
    const seen: string[] = [];
    const nexts: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 10; i++) {
      const r = await call('GET', `/api/v1/catalog?limit=1${after === null ? '' : `&after=${encodeURIComponent(after)}`}`, subscriber);
      assert.equal(r.status, 200, r.text);
      assert.doesNotMatch(r.text, /secret/);
      const page = r.json() as { items: Json[]; next: string | null };
      seen.push(...page.items.map((t) => `${t.sender}:${t.type}`));
      if (page.next === null) break;
      nexts.push(page.next);
      after = page.next;
    }
    assert.deepEqual(seen, ['billing:a.paid', 'billing:b.paid', 'billing:c.paid']);
    assert.deepEqual(nexts, ['billing:a.paid', 'billing:b.paid']);
    assert.equal((await call('GET', '/api/v1/catalog/alpha/secret.one', subscriber)).status, 404);
  });

  test('producers and consumers: an admin sees them, a subscriber gets the fields left out (list, one type, AsyncAPI)', async () => {
    const one = (await call('GET', '/api/v1/catalog/billing/a.paid', subscriber)).json();
    assert.equal(one.type, 'a.paid');
    assert.ok(!('producers' in one) && !('consumers' in one), JSON.stringify(one));
    assert.ok(one.firstSeen !== null, 'when it was seen is not who saw it');
    const listed = (await call('GET', '/api/v1/catalog', subscriber)).json().items as Json[];
    assert.ok(listed.length === 3 && listed.every((t) => !('producers' in t) && !('consumers' in t)));
    const doc = await call('GET', '/api/v1/catalog/asyncapi.json', subscriber);
    assert.equal(doc.status, 200, doc.text);
    assert.deepEqual(doc.json().operations, {});
    assert.doesNotMatch(doc.text, new RegExp(`${sub}|secret`));
    assert.deepEqual(Object.keys(doc.json().channels as Json).sort(), ['billing.a.paid', 'billing.b.paid', 'billing.c.paid']);

    const mine = (await admin('GET', '/api/v1/catalog/billing/a.paid')).json();
    assert.deepEqual(
      (mine.consumers as Json[]).map((c) => c.name),
      [sub],
    );
    const full = await admin('GET', '/api/v1/catalog/asyncapi.json');
    assert.match(full.text, new RegExp(`subscription ${sub} receives`));
    assert.ok(Object.keys(full.json().channels as Json).includes('zulu.secret.two'));
  });

  test('versions per type are bounded: the one past maxVersions is 429 LIMIT_EXCEEDED, and nothing is written', async () => {
    const path = `/api/v1/catalog/billing/versions.${run}`;
    for (let v = 1; v <= 100; v++) {
      const r = await admin('PUT', path, { schema: { type: 'object', minProperties: v } });
      assert.ok(r.status === 200 || r.status === 201, r.text);
    }
    const over = await admin('PUT', path, { schema: { type: 'object', minProperties: 101 } });
    assert.equal(over.status, 429, over.text);
    assert.equal(over.json().code, 'LIMIT_EXCEEDED');
    assert.match(String(over.json().detail), /has 100 schema versions/);
    const t = (await admin('GET', path)).json();
    assert.equal(t.version, 100);
    assert.equal((t.versions as unknown[]).length, 100);
  });
});
