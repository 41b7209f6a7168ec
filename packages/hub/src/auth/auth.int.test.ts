// Authentication's limits and the user routes' validation through the REST API (fastify's inject)
// over the real embedded store: failed authentications per address and publishes per token are
// rate-limited with Retry-After; hostile user and role bodies are 400 naming the field; the last
// use of a token is recorded. The publish behind POST /api/v1/events is a stand-in that records
// the event: what is tested is the limit in front of it (the real publish path is access.e2e.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type HeraldEvent, parseSelector } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import { createApi } from '../api/index.ts';
import { createUserStore, openStore, type SqlStore, type UserStore } from '../store/index.ts';
import { Auth } from './auth.ts';
import { Users } from './users.ts';

describe('authentication limits and user validation (REST inject, embedded store)', () => {
  let dir: string;
  let store: SqlStore;
  let app: FastifyInstance;
  let clock = 1_000_000;
  const published: HeraldEvent[] = [];
  const ADMIN = 'a'.repeat(40);
  let users: UserStore;
  let auth: Auth;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'herald-auth-'));
    store = await openStore({ dataDir: dir });
    await store.migrate();
    users = createUserStore(store.sql);
    auth = new Auth({ enabled: true, users, adminToken: ADMIN, failuresPerMinute: 3, publishRatePerToken: 2, now: () => clock });
    app = await createApi({
      store,
      publish: async (e) => void published.push(e),
      ready: () => true,
      auth,
      users: new Users({ store: users }),
    });
  });
  after(async () => {
    await app?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const inject = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, token?: string, payload?: unknown, ip = '10.0.0.1') =>
    app.inject({
      method,
      url,
      remoteAddress: ip,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    });

  test('failed authentications from one address: 401 three times, then 429 with Retry-After; a good token still passes; others unaffected', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await inject('GET', '/api/v1/users', 'wrong', undefined, '10.9.9.9')).statusCode, 401);
    const limited = await inject('GET', '/api/v1/users', 'wrong', undefined, '10.9.9.9');
    assert.equal(limited.statusCode, 429);
    assert.equal(limited.json().code, 'LIMIT_EXCEEDED');
    assert.ok(Number(limited.headers['retry-after']) >= 1, `Retry-After ${limited.headers['retry-after']}`);
    assert.equal(
      (await inject('GET', '/api/v1/users', ADMIN, undefined, '10.9.9.9')).statusCode,
      200,
      'valid credentials behind the same address (a NAT) are not locked out',
    );
    assert.equal((await inject('GET', '/api/v1/users', 'wrong', undefined, '10.8.8.8')).statusCode, 401, 'another address is not held');
    clock += 21_000; // 3 per minute: one attempt back every 20 s
    assert.equal((await inject('GET', '/api/v1/users', 'wrong', undefined, '10.9.9.9')).statusCode, 401);
    assert.equal((await inject('GET', '/api/v1/users', 'wrong', undefined, '10.9.9.9')).statusCode, 429);
  });

  test('IPv6 clients are limited by their /64: another address of the same /64 is held, another /64 is not', async () => {
    for (let i = 0; i < 3; i++)
      assert.equal((await inject('GET', '/api/v1/users', 'wrong', undefined, `2001:db8:1:2::${i + 1}`)).statusCode, 401);
    assert.equal((await inject('GET', '/api/v1/users', 'wrong', undefined, '2001:db8:1:2:ffff::9')).statusCode, 429);
    assert.equal((await inject('GET', '/api/v1/users', 'wrong', undefined, '2001:db8:1:3::1')).statusCode, 401);
  });

  test('hostile Authorization headers are 401, never a 500', async () => {
    for (const header of [
      'Bearer',
      'Bearer ',
      'Basic YTpi',
      `Bearer ${'x'.repeat(5000)}`,
      'Bearer a\u0000b',
      'bearer  hrd_short',
      '\u00ff\u00fe',
    ]) {
      const r = await app.inject({ method: 'GET', url: '/api/v1/users', remoteAddress: '10.1.1.1', headers: { authorization: header } });
      assert.equal(r.statusCode, 401, JSON.stringify(header.slice(0, 20)));
      clock += 60_000;
    }
  });

  test('hostile user bodies are 400 naming the field; a taken name is 409', async () => {
    const cases: [unknown, RegExp][] = [
      [{ name: 'x'.repeat(65), roles: [{ role: 'admin' }] }, /^name$/],
      [{ name: 'a\u0000b', roles: [{ role: 'admin' }] }, /^name$/],
      [{ name: 'ok', roles: [] }, /roles/],
      [{ name: 'ok', roles: [{ role: 'root' }] }, /^roles\[0\]\.role$/],
      [{ name: 'ok', roles: [{ role: 'publisher', senders: [] }] }, /^roles\[0\]\.senders$/],
      [{ name: 'ok', roles: [{ role: 'publisher', senders: ['bad.sender'] }] }, /^roles\[0\]\.senders$/],
      [{ name: 'ok', roles: [{ role: 'publisher', senders: Array.from({ length: 300 }, (_, i) => `s${i}`) }] }, /^roles\[0\]\.senders$/],
      [{ name: 'ok', roles: [{ role: 'subscriber', selector: 'nocolon' }] }, /^roles\[0\]\.selector$/],
      [{ name: 'ok', roles: [{ role: 'subscriber', selector: { canonical: 'not a selector' } }] }, /^roles\[0\]\.selector$/],
      [{ name: 'ok', roles: [{ role: 'subscriber', selector: [1] }] }, /^roles\[0\]\.selector$/],
      [{ name: 'ok', roles: [{ role: 'admin', senders: ['x'] }] }, /^roles\[0\]$/],
      [{ name: 'ok', roles: Array.from({ length: 17 }, () => ({ role: 'admin' })) }, /^roles$/],
      [{ name: 'ok', roles: [JSON.parse(`${'['.repeat(200)}${']'.repeat(200)}`)] }, /^body$/], // the input guard's depth bound
      [{ name: 'ok', roles: [{ role: 'admin' }], extra: 1 }, /extra/],
    ];
    for (const [body, parameter] of cases) {
      const r = await inject('POST', '/api/v1/users', ADMIN, body, '10.2.2.2');
      assert.equal(r.statusCode, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.body}`);
      assert.match(String(r.json().parameter), parameter, r.body);
    }
    assert.equal((await inject('POST', '/api/v1/users', ADMIN, { name: 'dup', roles: [{ role: 'admin' }] }, '10.2.2.2')).statusCode, 201);
    assert.equal((await inject('POST', '/api/v1/users', ADMIN, { name: 'dup', roles: [{ role: 'admin' }] }, '10.2.2.2')).statusCode, 409);
    assert.equal((await inject('DELETE', '/api/v1/users/dup/tokens/not-a-uuid', ADMIN, undefined, '10.2.2.2')).statusCode, 404);
    assert.equal((await inject('GET', '/api/v1/users/nobody', ADMIN, undefined, '10.2.2.2')).statusCode, 404);
  });

  test('publishes per token: two a second, then 429 with Retry-After; the last use of the token is recorded', async () => {
    await inject('POST', '/api/v1/users', ADMIN, { name: 'pub', roles: [{ role: 'publisher', senders: ['billing'] }] }, '10.3.3.3');
    const t = (await inject('POST', '/api/v1/users/pub/tokens', ADMIN, { name: 't' }, '10.3.3.3')).json() as { token: string };
    const event = { sender: 'billing', type: 'invoice.paid', data: { n: 1 } };
    assert.equal((await inject('POST', '/api/v1/events', t.token, event, '10.3.3.3')).statusCode, 202);
    assert.equal((await inject('POST', '/api/v1/events', t.token, event, '10.3.3.3')).statusCode, 202);
    const limited = await inject('POST', '/api/v1/events', t.token, event, '10.3.3.3');
    assert.equal(limited.statusCode, 429);
    assert.equal(limited.headers['retry-after'], '1');
    clock += 1000;
    assert.equal((await inject('POST', '/api/v1/events', t.token, event, '10.3.3.3')).statusCode, 202);
    assert.equal(published.length, 3);
    let listed: { lastUsedAt: string | null }[] = [];
    for (let i = 0; i < 50; i++) {
      listed = (await inject('GET', '/api/v1/users/pub/tokens', ADMIN, undefined, '10.3.3.3')).json().items;
      if (listed[0]?.lastUsedAt) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(listed[0]?.lastUsedAt, 'lastUsedAt is set once the token was used');
  });

  test('an admin creating a subscription whose name has a stale claim of another user owns it alone', async () => {
    await users.insert({
      name: 'claimer',
      roles: [{ role: 'subscriber', selector: parseSelector('*:*') }],
      createdAt: Date.now(),
      amqpUsername: undefined,
    });
    await users.insert({ name: 'boss', roles: [{ role: 'admin' }], createdAt: Date.now(), amqpUsername: undefined });
    assert.equal(await users.claim('stale-sub', 'claimer'), 'claimer');
    const boss = (await users.list()).find((u) => u.name === 'boss')!;
    await auth.assertSubscription({ kind: 'user', user: boss, tokenId: 'x' }, 'stale-sub', '*:*', { create: true });
    assert.equal(await users.ownerOf('stale-sub'), 'boss');
  });

  test('a user row whose roles cannot be read has no roles: listed for an admin to fix, its token allowed nothing, an unknown role never an admin', async () => {
    await inject('POST', '/api/v1/users', ADMIN, { name: 'broken', roles: [{ role: 'admin' }] }, '10.4.4.4');
    const t = (await inject('POST', '/api/v1/users/broken/tokens', ADMIN, { name: 't' }, '10.4.4.4')).json() as { token: string };
    assert.equal((await inject('GET', '/api/v1/users', t.token, undefined, '10.4.4.4')).statusCode, 200);
    for (const roles of ['[{"role":"root"}]', '[{"role":"subscriber","selector":"no colon"}]', '{"not":"an array"}']) {
      await store.sql.query('UPDATE users SET roles = $2::jsonb WHERE name = $1', ['broken', roles]);
      const listed = await inject('GET', '/api/v1/users', ADMIN, undefined, '10.4.4.4');
      assert.equal(listed.statusCode, 200, listed.body);
      const broken = (listed.json().items as { name: string; roles: unknown[] }[]).find((u) => u.name === 'broken');
      assert.deepEqual(broken?.roles, [], roles);
      assert.equal((await inject('GET', '/api/v1/users', t.token, undefined, '10.4.4.5')).statusCode, 403, roles);
    }
    const fixed = await inject('PUT', '/api/v1/users/broken/roles', ADMIN, [{ role: 'admin' }], '10.4.4.4');
    assert.equal(fixed.statusCode, 200, fixed.body);
    assert.equal((await inject('GET', '/api/v1/users', t.token, undefined, '10.4.4.5')).statusCode, 200);
    assert.equal((await inject('DELETE', '/api/v1/users/broken', ADMIN, undefined, '10.4.4.4')).statusCode, 204);
  });
});
