// Access control through a real hub process (PostgreSQL, RabbitMQ with its management API, HTTP and
// gRPC): every route of /openapi.json and both gRPC methods without credentials, with a bad token
// and with a token of each role, against the one access table; the scope rules (senders,
// selectors, owners); tokens stored hashed and revoked at once; the refusals of browser requests;
// the start refusals of an exposed hub without authentication.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { subscription } from '@herald/client/grpc';
import { createEvent, ErrorCodes, PROTO_LOADER_OPTIONS, PROTO_PATH, toAmqp } from '@herald/core';
import {
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  managementUrl,
  spawnHerald,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
} from '@herald/testing';
import amqp from 'amqplib';
import pg from 'pg';
import { ACCESS, type Access } from '../api/access.ts';
import { DOCS_PAGE_ROUTES } from '../api/docs-page.ts';
import { DASHBOARD_ROUTES } from '../dashboard/routes.ts';

const ADMIN_TOKEN = randomBytes(32).toString('base64url');
const run = randomBytes(3).toString('hex');
const name = (n: string) => `${n}-${run}`;

type Role = 'admin' | 'publisher' | 'subscriber';

describe('access control (e2e: hub process, PostgreSQL, RabbitMQ)', { timeout: 180_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: HeraldProcess;
  let base: string;
  let grpcUrl: string;
  const tokens: Record<Role, string> = { admin: '', publisher: '', subscriber: '' };
  let otherSubscriber = '';
  /** The RabbitMQ credentials the publisher user was given (HERALD_RABBITMQ_API). */
  let pubAmqp: { username: string; password: string } | undefined;

  const call = async (method: string, path: string, options: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${base}${path}`, {
      method,
      headers,
      body: options.body === undefined ? null : JSON.stringify(options.body),
      signal: AbortSignal.timeout(10_000),
    });
    // SSE answers stream: the status is what is checked, the body is dropped.
    const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? '' : await res.text();
    if (res.headers.get('content-type')?.startsWith('text/event-stream')) await res.body?.cancel();
    return { status: res.status, text, json: () => JSON.parse(text) as Record<string, unknown>, headers: res.headers };
  };

  const admin = (method: string, path: string, body?: unknown) => call(method, path, { token: ADMIN_TOKEN, body });

  const userWithToken = async (user: string, roles: unknown[]): Promise<string> => {
    const created = await admin('POST', '/api/v1/users', { name: user, roles });
    assert.equal(created.status, 201, created.text);
    if (user === name('pub')) pubAmqp = created.json().amqp as typeof pubAmqp;
    const t = await admin('POST', `/api/v1/users/${user}/tokens`, { name: 'e2e' });
    assert.equal(t.status, 201, t.text);
    return t.json().token as string;
  };

  before(async () => {
    vhost = await createTestVhost('access');
    db = await createTestDatabase('access');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_HTTP_PORT: String(port),
      HERALD_AUTH: 'required',
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
      HERALD_RABBITMQ_API: managementUrl,
      // The matrix below fails authentication on purpose, many times, from one address.
      HERALD_AUTH_FAILURES_PER_MINUTE: '100000',
      HERALD_LOG_LEVEL: 'info',
    });
    grpcUrl = `127.0.0.1:${hub.grpcPort()}`;
    tokens.admin = await userWithToken(name('root'), [{ role: 'admin' }]);
    tokens.publisher = await userWithToken(name('pub'), [{ role: 'publisher', senders: ['billing'] }]);
    tokens.subscriber = await userWithToken(name('sub'), [{ role: 'subscriber', selector: ['billing:*'] }]);
    otherSubscriber = await userWithToken(name('sub2'), [{ role: 'subscriber', selector: '*:*' }]);
  });

  after(async () => {
    for (const u of ['root', 'pub', 'sub', 'sub2', 'both', 'gstream', 'sstream'])
      await admin('DELETE', `/api/v1/users/${name(u)}`).catch(() => undefined);
    await hub?.kill();
    await db?.drop();
    await vhost?.delete();
  });

  test('the hub says at start that authentication is on', () => {
    assert.match(hub.output(), /"auth":"on"/);
  });

  test('every route of /openapi.json: 401 without credentials or with a bad token, 403 or allowed by role as the access table says', async () => {
    const doc = (await call('GET', '/openapi.json')).json() as { paths: Record<string, Record<string, { security?: unknown[] }>> };
    const concrete = (path: string) =>
      path.replace('{name}', `nobody-${run}`).replace('{id}', '018f0000-0000-7000-8000-000000000000').replace('{offset}', '1');
    const bodyOf = (method: string, path: string) => {
      if (method !== 'post' && method !== 'put') return undefined;
      if (path === '/api/v1/events') return { sender: 'billing', type: 'access.check', data: { n: 1 } };
      return path.endsWith('/roles') ? [] : {};
    };
    const queryOf = (path: string) => (path === '/api/v1/events' ? '?selector=billing:*' : '');
    const allowedFor = (access: Access, role: Role) => role === 'admin' || access === 'open' || access === 'user' || access === role;
    let checked = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        const url = path.replace(/\{(\w+)\}/g, ':$1');
        const access = ACCESS[`${method.toUpperCase()} ${url}`];
        assert.ok(access, `${method.toUpperCase()} ${path} is served but has no rule in the access table`);
        assert.deepEqual(op.security, access === 'open' ? [] : [{ bearer: [] }], `${method} ${path}: the OpenAPI security`);
        const target = concrete(path) + (method === 'get' ? queryOf(path) : '');
        const body = bodyOf(method, path);
        const m = method.toUpperCase();
        const none = await call(m, target, { body });
        const bad = await call(m, target, { body, token: `hrd_${randomBytes(32).toString('base64url')}` });
        if (access === 'open') {
          assert.ok(![401, 403].includes(none.status), `${m} ${path} is open, answered ${none.status}`);
        } else {
          for (const r of [none, bad]) {
            assert.equal(r.status, 401, `${m} ${path} without valid credentials: ${r.status} ${r.text}`);
            assert.equal(r.json().code, ErrorCodes.UNAUTHENTICATED);
            assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
          }
        }
        for (const role of ['admin', 'publisher', 'subscriber'] as const) {
          const r = await call(m, target, { body, token: tokens[role] });
          if (allowedFor(access, role)) {
            assert.ok(![401, 403].includes(r.status), `${m} ${path} as ${role} (${access}): ${r.status} ${r.text}`);
          } else {
            assert.equal(r.status, 403, `${m} ${path} as ${role} (${access}): ${r.status} ${r.text}`);
            assert.equal(r.json().code, ErrorCodes.FORBIDDEN);
          }
        }
        checked++;
      }
    }
    // /openapi.json, the dashboard's and the /docs page's files are hidden from the document: they are open.
    const hidden = ['GET /openapi.json', ...DASHBOARD_ROUTES, ...DOCS_PAGE_ROUTES];
    for (const rule of hidden) {
      assert.equal(ACCESS[rule], 'open', rule);
      const r = await call('GET', rule.slice(4).replace('*', 'app.js'));
      assert.equal(r.status, 200, `${rule} without credentials: ${r.status}`);
    }
    const inTable = Object.keys(ACCESS).filter((k) => !hidden.includes(k)).length;
    assert.equal(checked, inTable, 'every rule of the access table was checked against a served route');
  });

  test('an unknown route: 401 without credentials, 404 with them (nobody learns which routes exist)', async () => {
    assert.equal((await call('GET', '/api/v1/nothing')).status, 401);
    assert.equal((await call('GET', '/api/v1/nothing', { token: tokens.subscriber })).status, 404);
  });

  test('a publisher publishes as its senders only; a subscriber reads inside its selectors only, never narrowed', async () => {
    const own = await call('POST', '/api/v1/events', {
      token: tokens.publisher,
      body: { sender: 'billing', type: 'invoice.paid', data: 1 },
    });
    assert.equal(own.status, 202, own.text);
    const other = await call('POST', '/api/v1/events', { token: tokens.publisher, body: { sender: 'shipping', type: 'x', data: 1 } });
    assert.equal(other.status, 403);
    assert.match(other.json().detail as string, /publish as sender "?shipping/);
    const shipped = await admin('POST', '/api/v1/events', { sender: 'shipping', type: 'parcel.sent', data: 1 });
    assert.equal(shipped.status, 202);

    const inside = await call('GET', '/api/v1/events?selector=billing:invoice.*', { token: tokens.subscriber });
    assert.equal(inside.status, 200);
    const outside = await call('GET', '/api/v1/events?selector=billing:*,shipping:*', { token: tokens.subscriber });
    assert.equal(outside.status, 403);
    assert.match(outside.json().detail as string, /shipping:\*/);
    assert.equal((await call('GET', '/api/v1/events', { token: tokens.subscriber })).status, 403, 'no selector means every event');

    // One event by offset: allowed when the subscriber's selectors match it, else 404.
    let offsets: { offset: string; sender: string }[] = [];
    for (let i = 0; i < 100 && offsets.length < 2; i++) {
      const r = await admin('GET', '/api/v1/events?selector=billing:invoice.paid,shipping:parcel.sent');
      offsets = (r.json().events as { offset: string; sender: string }[]) ?? [];
      if (offsets.length < 2) await new Promise((res) => setTimeout(res, 100));
    }
    const billing = offsets.find((e) => e.sender === 'billing');
    const shipping = offsets.find((e) => e.sender === 'shipping');
    assert.ok(billing && shipping, 'both events were stored');
    assert.equal((await call('GET', `/api/v1/events/${billing.offset}`, { token: tokens.subscriber })).status, 200);
    // Outside its selectors an event is as absent as one that is not there: its sender and type are not told.
    const hidden = await call('GET', `/api/v1/events/${shipping.offset}`, { token: tokens.subscriber });
    assert.equal(hidden.status, 404);
    assert.doesNotMatch(hidden.text, /shipping|parcel/);
  });

  test('a subscription belongs to its creator: others get 403, admins pass, lists show one’s own', async () => {
    const sub = name('ledger');
    const outside = await call('POST', '/api/v1/subscriptions', {
      token: tokens.subscriber,
      body: { name: sub, selector: 'shipping:*' },
    });
    assert.equal(outside.status, 403);
    const created = await call('POST', '/api/v1/subscriptions', { token: tokens.subscriber, body: { name: sub, selector: 'billing:*' } });
    assert.equal(created.status, 201, created.text);
    assert.equal((await call('GET', `/api/v1/subscriptions/${sub}`, { token: tokens.subscriber })).status, 200);
    assert.equal((await call('GET', `/api/v1/subscriptions/${sub}`, { token: otherSubscriber })).status, 403);
    assert.equal((await call('GET', `/api/v1/subscriptions/${sub}/events?wait=0`, { token: otherSubscriber })).status, 403);
    assert.equal((await call('DELETE', `/api/v1/subscriptions/${sub}`, { token: otherSubscriber })).status, 403);
    const taken = await call('POST', '/api/v1/subscriptions', { token: otherSubscriber, body: { name: sub, selector: 'billing:*' } });
    assert.equal(taken.status, 403, 'the same name and selector does not hand it over');
    assert.equal((await call('GET', `/api/v1/subscriptions/${sub}`, { token: tokens.admin })).status, 200);
    // Another's subscription outside the caller's selectors: 403 for the owner, saying nothing of its selector.
    const adminsSub = name('adminsub');
    assert.equal(
      (await call('POST', '/api/v1/subscriptions', { token: tokens.admin, body: { name: adminsSub, selector: 'shipping:parcel.*' } }))
        .status,
      201,
    );
    const foreign = await call('GET', `/api/v1/subscriptions/${adminsSub}/events?wait=0`, { token: tokens.subscriber });
    assert.equal(foreign.status, 403);
    assert.match(foreign.text, /belongs to another user/);
    assert.doesNotMatch(foreign.text, /shipping|parcel/);
    assert.equal((await call('DELETE', `/api/v1/subscriptions/${adminsSub}`, { token: tokens.admin })).status, 204);
    const mine = (await call('GET', '/api/v1/subscriptions', { token: otherSubscriber })).json().items as { name: string }[];
    assert.ok(!mine.some((s) => s.name === sub));
    const theirs = (await call('GET', '/api/v1/subscriptions', { token: tokens.subscriber })).json().items as { name: string }[];
    assert.deepEqual(
      theirs.map((s) => s.name),
      [sub],
    );
    assert.equal((await call('GET', `/api/v1/subscriptions/${sub}/events?wait=0`, { token: tokens.subscriber })).status, 200);

    // Roles change on the next request: outside its selectors now, its own subscription is refused.
    const roles = await admin('PUT', `/api/v1/users/${name('sub')}/roles`, [{ role: 'subscriber', selector: ['billing:invoice.*'] }]);
    assert.equal(roles.status, 200, roles.text);
    assert.equal((await call('GET', `/api/v1/subscriptions/${sub}/events?wait=0`, { token: tokens.subscriber })).status, 403);
    await admin('PUT', `/api/v1/users/${name('sub')}/roles`, [{ role: 'subscriber', selector: ['billing:*'] }]);
    assert.equal((await call('DELETE', `/api/v1/subscriptions/${sub}`, { token: tokens.subscriber })).status, 204);
  });

  test('tokens: the secret is shown once, stored as its SHA-256 only, listed without it, and revoked on the very next request', async () => {
    const user = name('both');
    const created = await admin('POST', '/api/v1/users', {
      name: user,
      roles: [
        { role: 'publisher', senders: ['billing'] },
        { role: 'subscriber', selector: ['billing:*'] },
      ],
    });
    assert.equal(created.status, 201, created.text);
    const t = (await admin('POST', `/api/v1/users/${user}/tokens`, { name: 'deploy' })).json();
    const secret = t.token as string;
    assert.match(secret, /^hrd_[A-Za-z0-9_-]{43}$/);
    assert.equal((await admin('POST', `/api/v1/users/${user}/tokens`, { name: 'deploy' })).status, 409, 'token names are unique per user');

    const listed = await admin('GET', `/api/v1/users/${user}/tokens`);
    assert.ok(!listed.text.includes(secret), 'the list does not carry the secret');
    assert.deepEqual(Object.keys((listed.json().items as object[])[0]!).sort(), ['createdAt', 'id', 'lastUsedAt', 'name']);
    assert.ok(!(await admin('GET', `/api/v1/users/${user}`)).text.includes(secret));

    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const rows = await client.query('SELECT * FROM api_tokens WHERE id = $1', [t.id]);
      assert.equal(rows.rows.length, 1);
      const row = rows.rows[0] as Record<string, unknown>;
      assert.deepEqual(row.secret_sha256, createHash('sha256').update(secret).digest());
      for (const [column, value] of Object.entries(row))
        assert.ok(!String(value).includes(secret.slice(4)), `column ${column} holds the secret`);
    } finally {
      await client.end();
    }

    assert.equal((await call('GET', '/api/v1/events?selector=billing:*', { token: secret })).status, 200);
    assert.equal((await admin('DELETE', `/api/v1/users/${user}/tokens/${t.id}`)).status, 204);
    const revoked = await call('GET', '/api/v1/events?selector=billing:*', { token: secret });
    assert.equal(revoked.status, 401, 'a revoked token fails on the very next request');
    assert.ok(!hub.output().includes(secret.slice(4)), 'no log line carries the secret');
    assert.ok(!hub.output().includes(ADMIN_TOKEN), 'nor the admin token');
  });

  test('gRPC: Publish and Subscribe need credentials (UNAUTHENTICATED) and the role (PERMISSION_DENIED)', async () => {
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const Herald = grpc.loadPackageDefinition(def).herald as never as { v1: { Herald: grpc.ServiceClientConstructor } };
    const client = new Herald.v1.Herald(grpcUrl, grpc.credentials.createInsecure());
    const publish = (token: string | undefined, sender: string) =>
      new Promise<grpc.status>((resolve) => {
        const md = new grpc.Metadata();
        if (token !== undefined) md.set('authorization', `Bearer ${token}`);
        (client as unknown as { publish: (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void }).publish(
          { sender, type: 'grpc.check', data: Buffer.from('1'), contentType: 'application/json' },
          md,
          (err) => resolve(err ? err.code : grpc.status.OK),
        );
      });
    try {
      assert.equal(await publish(undefined, 'billing'), grpc.status.UNAUTHENTICATED);
      assert.equal(await publish('hrd_nope', 'billing'), grpc.status.UNAUTHENTICATED);
      assert.equal(await publish(tokens.publisher, 'shipping'), grpc.status.PERMISSION_DENIED);
      assert.equal(await publish(tokens.subscriber, 'billing'), grpc.status.PERMISSION_DENIED);
      assert.equal(await publish(tokens.publisher, 'billing'), grpc.status.OK);
    } finally {
      client.close();
    }

    const subscribeError = async (token: string | undefined, selector: string) => {
      const sub = subscription(name(`g-${randomBytes(2).toString('hex')}`), selector, { url: grpcUrl, token, start: 'earliest' });
      try {
        for await (const _ of sub) return 'opened';
      } catch (err) {
        return (err as { code?: string }).code;
      } finally {
        await sub.close();
      }
      return 'ended';
    };
    assert.equal(await subscribeError(undefined, 'billing:*'), ErrorCodes.UNAUTHENTICATED);
    assert.equal(await subscribeError(tokens.subscriber, 'shipping:*'), ErrorCodes.FORBIDDEN);
    assert.equal(await subscribeError(tokens.publisher, 'billing:*'), ErrorCodes.FORBIDDEN);
    assert.equal(await subscribeError(tokens.subscriber, 'billing:*'), 'opened', 'inside its selectors it gets events');
  });

  test('open streams end when their token is revoked or their roles no longer allow them: gRPC Subscribe and SSE', async () => {
    const event = { sender: 'billing', type: 'invoice.paid', data: { stream: true } };
    assert.equal((await call('POST', '/api/v1/events', { token: tokens.publisher, body: event })).status, 202);

    // gRPC: the token is revoked while the stream delivers.
    const grpcUser = name('gstream');
    const grpcToken = await userWithToken(grpcUser, [{ role: 'subscriber', selector: ['billing:*'] }]);
    const sub = subscription(name('gstream-sub'), 'billing:*', { url: grpcUrl, token: grpcToken, start: 'earliest' });
    let delivered!: () => void;
    const first = new Promise<void>((resolve) => (delivered = resolve));
    const ended = (async () => {
      try {
        for await (const _ of sub) delivered();
        return 'ended';
      } catch (err) {
        return (err as { code?: string }).code;
      }
    })();
    await first;
    const [tokenInfo] = (await admin('GET', `/api/v1/users/${grpcUser}/tokens`)).json().items as { id: string }[];
    assert.equal((await admin('DELETE', `/api/v1/users/${grpcUser}/tokens/${tokenInfo!.id}`)).status, 204);
    assert.equal(await ended, ErrorCodes.UNAUTHENTICATED);
    await sub.close();

    // SSE: the user's roles narrow so that the subscription is outside them.
    const sseUser = name('sstream');
    const sseToken = await userWithToken(sseUser, [{ role: 'subscriber', selector: ['billing:*'] }]);
    const sseSub = name('sstream-sub');
    assert.equal(
      (await call('POST', '/api/v1/subscriptions', { token: sseToken, body: { name: sseSub, selector: 'billing:*', start: 'earliest' } }))
        .status,
      201,
    );
    const res = await fetch(`${base}/api/v1/subscriptions/${sseSub}/stream`, { headers: { authorization: `Bearer ${sseToken}` } });
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const readUntil = async (pattern: RegExp) => {
      while (!pattern.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      return text;
    };
    assert.match(await readUntil(/\nid: \d+/), /event:|data:/, 'the stream delivers');
    assert.equal((await admin('PUT', `/api/v1/users/${sseUser}/roles`, [{ role: 'subscriber', selector: ['shipping:*'] }])).status, 200);
    assert.match(await readUntil(/: ended: FORBIDDEN/), /: ended: FORBIDDEN: user .* may not read billing:\*/);
    assert.equal((await reader.read()).done, true, 'and the response ends');
    await admin('DELETE', `/api/v1/subscriptions/${sseSub}`);
  });

  test('AMQP: the publisher user’s RabbitMQ credentials publish its sender, RabbitMQ refuses another; deleted, they no longer connect', async () => {
    assert.ok(pubAmqp, 'the answer that created the publisher carried its RabbitMQ credentials');
    assert.ok(!hub.output().includes(pubAmqp.password), 'the password is in no log line');
    const url = new URL(vhost.url);
    url.username = encodeURIComponent(pubAmqp.username);
    url.password = encodeURIComponent(pubAmqp.password);
    const conn = await amqp.connect(url.href, { noDelay: true });
    conn.on('error', () => undefined);
    const id = randomUUID();
    try {
      const ch = await conn.createConfirmChannel();
      const event = toAmqp(createEvent({ id, sender: 'billing', type: 'amqp.check', data: Buffer.from('{}') }), {
        userId: pubAmqp.username,
      });
      await new Promise<void>((resolve, reject) =>
        ch.publish('herald.ingest', event.routingKey, event.content, event.properties, (err) => (err ? reject(err) : resolve())),
      );
      let stored = 0;
      for (let i = 0; i < 100 && stored === 0; i++) {
        stored = (await admin('GET', `/api/v1/events/by-id/${id}`)).status === 200 ? 1 : 0;
        if (!stored) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(stored, 1, 'the event published with its own credentials is in the log');
      const ch2 = await conn.createConfirmChannel();
      const closed = new Promise<string>((resolve) => ch2.on('error', (err: Error) => resolve(err.message)));
      ch2.on('close', () => undefined);
      const spoof = toAmqp(createEvent({ sender: 'shipping', type: 'amqp.check', data: Buffer.from('{}') }));
      ch2.publish('herald.ingest', spoof.routingKey, spoof.content, spoof.properties, () => undefined);
      assert.match(await closed, /ACCESS_REFUSED/);
    } finally {
      await conn.close().catch(() => undefined);
    }
    const extra = await admin('POST', '/api/v1/users', { name: name('gone'), roles: [{ role: 'publisher', senders: ['gone'] }] });
    const gone = extra.json().amqp as { username: string; password: string };
    assert.equal((await admin('DELETE', `/api/v1/users/${name('gone')}`)).status, 204);
    const goneUrl = new URL(vhost.url);
    goneUrl.username = encodeURIComponent(gone.username);
    goneUrl.password = encodeURIComponent(gone.password);
    await assert.rejects(amqp.connect(goneUrl.href), /ACCESS_REFUSED|403/);
  });

  test('browser requests are refused: another origin, another site, an opaque origin', async () => {
    for (const headers of <Record<string, string>[]>[
      { origin: 'http://evil.example' },
      { origin: 'null' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
    ]) {
      const r = await call('GET', '/api/v1/events?selector=billing:*', { token: tokens.subscriber, headers });
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.equal(r.json().code, ErrorCodes.FORBIDDEN);
    }
    const same = await call('GET', '/api/v1/events?selector=billing:*', { token: tokens.subscriber, headers: { origin: base } });
    assert.equal(same.status, 200, 'the hub’s own origin may');
  });
});

describe('start refusals and the loopback default (e2e: hub process)', { timeout: 120_000 }, () => {
  test('listening beyond loopback with authentication off exits 2 with one line saying how to fix it', async () => {
    const p = spawnHerald(['hub'], { HERALD_HTTP_HOST: '0.0.0.0', HERALD_AUTH: 'off', HERALD_HTTP_PORT: '0' });
    const code = await p.exited;
    assert.equal(code, 2);
    const lines = p.stderr().trim().split('\n');
    assert.equal(lines.length, 1, p.stderr());
    assert.match(
      lines[0]!,
      /^herald: refusing to listen on 0\.0\.0\.0 with authentication off \(HERALD_AUTH=off\).*HERALD_AUTH=auto or required/,
    );
  });

  test('HERALD_AUTH=required without an admin says how to create one, and herald users add --admin --database-url creates one; a loopback hub without auth refuses a rebinding page', async () => {
    const vhost = await createTestVhost('access-start');
    const dir = `/tmp/herald-access-${randomBytes(4).toString('hex')}`;
    try {
      const port = await freePort();
      const required = await startHubProcess({
        HERALD_AMQP_URL: vhost.url,
        HERALD_DATABASE_URL: dir,
        HERALD_HTTP_PORT: String(port),
        HERALD_AUTH: 'required',
      });
      try {
        assert.match(required.output(), /there is no admin: set HERALD_ADMIN_TOKEN/);
      } finally {
        await required.kill();
      }
      // The other way out: the first admin written straight into the store, while no hub holds it.
      const add = spawnHerald(['users', 'add', 'first-admin', '--admin', '--database-url', dir], {});
      assert.equal(await add.exited, 0, add.output());
      const secret = add.output().match(/^hrd_\S+$/m)?.[0];
      assert.ok(secret, `a token on its own line: ${add.output()}`);
      const again = await startHubProcess({
        HERALD_AMQP_URL: vhost.url,
        HERALD_DATABASE_URL: dir,
        HERALD_HTTP_PORT: String(port),
        HERALD_AUTH: 'required',
      });
      try {
        assert.match(again.output(), /"msg":"authentication on"/);
        const users = await fetch(`http://127.0.0.1:${port}/api/v1/users`, { headers: { authorization: `Bearer ${secret}` } });
        assert.equal(users.status, 200, 'the bootstrapped admin is an admin');
        assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/users`)).status, 401);
      } finally {
        await again.kill();
      }
      const open = await startHubProcess({ HERALD_AMQP_URL: vhost.url, HERALD_DATABASE_URL: dir, HERALD_HTTP_PORT: String(port) });
      try {
        assert.match(open.output(), /authentication off: the hub listens on a loopback address only/);
        const ok = await fetch(`http://127.0.0.1:${port}/api/v1/events?limit=1`);
        assert.equal(ok.status, 200, 'a loopback hub without authentication answers local clients');
        // fetch sets Host itself; node:http sends the one a rebound page's browser would.
        const rebound = await new Promise<number>((resolve, reject) => {
          const req = request(
            { host: '127.0.0.1', port, path: '/api/v1/events?limit=1', headers: { host: `evil.example:${port}` } },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          );
          req.on('error', reject);
          req.end();
        });
        assert.equal(rebound, 403, 'a page whose domain was rebound to 127.0.0.1 is refused');
        const page = await fetch(`http://127.0.0.1:${port}/api/v1/pauses`, {
          method: 'POST',
          headers: { origin: 'http://evil.example', 'content-type': 'application/json' },
          body: JSON.stringify({ selector: '*:*', ttl: 60 }),
        });
        assert.equal(page.status, 403, 'a cross-origin page cannot pause the flow');
      } finally {
        await open.kill();
      }
    } finally {
      await vhost.delete();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
