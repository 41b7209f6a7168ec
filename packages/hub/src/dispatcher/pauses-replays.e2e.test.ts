import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  type RawPublisher,
  spawnHerald,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor as waitUntil,
} from '@herald/testing';
import { createReceiver, type Seen } from './test-kit.ts';

const nums = (seen: readonly Seen[]) => seen.map((s) => Number(s.offset));

const waitFor = (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 20_000) => waitUntil(what, fn, timeoutMs, 50);

describe('hub process: pauses and replays in router mode', { timeout: 150_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let pub: RawPublisher;
  let hub: HeraldProcess | undefined;
  let port = 0;
  let n = 0;

  const env = () => ({
    HERALD_AMQP_URL: vhost.url,
    HERALD_DATABASE_URL: db.url,
    HERALD_MODE: 'router',
    HERALD_HTTP_PORT: String(port),
    HERALD_LOG_LEVEL: 'info',
  });
  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  };
  /** Publishes events `sender.type` to herald.ingest, in order, each confirmed before the next. */
  const publish = async (...keys: string[]) => {
    for (const rk of keys) {
      const [sender, ...type] = rk.split('.');
      assert.ok(
        await pub.publish(INGEST_EXCHANGE, {
          routingKey: rk,
          content: Buffer.from(JSON.stringify({ n: ++n })),
          options: { messageId: crypto.randomUUID(), appId: sender, type: type.join('.'), contentType: 'application/json' },
        }),
      );
    }
  };
  const receiver = async (bindingKey = '#') => createReceiver(vhost.url, `rx-${++n}`, bindingKey);

  before(async () => {
    [vhost, db, port] = await Promise.all([createTestVhost('pauses'), createTestDatabase('pauses'), freePort()]);
    hub = await startHubProcess(env());
    pub = await createRawPublisher(vhost.url);
  });
  after(async () => {
    await pub?.close();
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  test('(a) a pause on s1:* holds exactly the s1 events; after resume they arrive in order before newer s1 events', async () => {
    const rx = await receiver();
    const created = await api<{ id: string; selector: string[]; expiresAt: string; held: number }>('POST', '/pauses', {
      selector: ['s1:*'],
      ttl: 120,
      reason: 'e2e',
    });
    assert.equal(created.status, 201);
    assert.deepEqual(created.body.selector, ['s1:*']);
    await publish('s1.t1', 's2.t1', 's1.t2', 's3.t1', 's1.t1');
    await rx.waitFor(2);
    await sleep(300);
    assert.deepEqual(
      rx.seen.map((s) => s.sender),
      ['s2', 's3'],
    );
    assert.equal((await api<{ held: number }>('GET', `/pauses/${created.body.id}`)).body.held, 3);
    const list = await api<{ items: { id: string }[] }>('GET', '/pauses');
    assert.deepEqual(
      list.body.items.map((p) => p.id),
      [created.body.id],
    );
    const resumed = await api<{ held: number }>('DELETE', `/pauses/${created.body.id}`);
    assert.equal(resumed.status, 200);
    await publish('s1.t3');
    await rx.waitFor(6);
    const s1 = rx.seen.filter((s) => s.sender === 's1');
    assert.deepEqual(
      s1.map((s) => s.type),
      ['t1', 't2', 't1', 't3'],
    );
    const o = nums(s1);
    assert.deepEqual(
      o,
      [...o].sort((a, b) => a - b),
    );
    assert.equal((await api('GET', '/pauses/018f0000-0000-7000-8000-000000000000')).status, 404);
    const bad = await api<{ detail?: string }>('POST', '/pauses', { selector: 's1:*', ttl: 10 * 86400 });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /ttl/);
    await rx.close();
  });

  test('(c) two overlapping pauses: events matching both wait for both', async () => {
    const rx = await receiver();
    const a = (await api<{ id: string }>('POST', '/pauses', { selector: 's4:*', ttl: 120 })).body;
    const b = (await api<{ id: string }>('POST', '/pauses', { selector: '*:u1', ttl: 120 })).body;
    await publish('s4.u1', 's4.u2', 's5.u1', 's5.u2');
    await rx.waitFor(1);
    await api('DELETE', `/pauses/${a.id}`);
    await rx.waitFor(2);
    await sleep(300);
    assert.deepEqual(
      rx.seen.map((s) => `${s.sender}.${s.type}`),
      ['s5.u2', 's4.u2'],
    );
    await api('DELETE', `/pauses/${b.id}`);
    await rx.waitFor(4);
    assert.deepEqual(
      rx.seen.slice(2).map((s) => `${s.sender}.${s.type}`),
      ['s4.u1', 's5.u1'],
    );
    await rx.close();
  });

  test('(d) replay of the last 10 events of t1, t2 from s1: exactly those, in order, marked, then the live ones', async () => {
    const keys: string[] = [];
    for (let i = 0; i < 30; i++) keys.push(`${i % 3 === 2 ? 's9' : 's6'}.${['t1', 't2', 't3'][i % 4 === 3 ? 2 : i % 2]}`);
    const warm = await receiver('s6.#');
    await publish(...keys);
    await warm.waitFor(keys.filter((k) => k.startsWith('s6.')).length);
    const expected = warm.seen
      .filter((s) => s.type === 't1' || s.type === 't2')
      .slice(-10)
      .map((s) => Number(s.offset));
    assert.equal(expected.length, 10);
    await warm.close();
    const rx = await receiver('s6.#');
    const r = await api<{ id: string; status: string; count: number }>('POST', '/replays', {
      selector: ['s6:t1', 's6:t2'],
      from: { last: 10 },
      target: 'flow',
    });
    assert.equal(r.status, 202);
    await publish('s6.t1', 's6.t2');
    await rx.waitFor(12);
    const replayed = rx.seen.filter((s) => s.replay !== undefined);
    assert.deepEqual(nums(replayed), expected);
    assert.ok(replayed.every((s) => s.replay === r.body.id));
    const live = rx.seen.filter((s) => s.replay === undefined);
    assert.equal(live.length, 2);
    assert.deepEqual(nums(rx.seen).slice(0, 10), expected, 'the replayed ones come first');
    await waitFor('replay done', async () => (await api<{ status: string }>('GET', `/replays/${r.body.id}`)).body.status === 'done');
    const status = await api<{ count: number }>('GET', `/replays/${r.body.id}`);
    assert.equal(status.body.count, 10);
    const bad = await api('POST', '/replays', { selector: 's6:*', from: { last: 1 }, target: 'subscription' });
    assert.equal(bad.status, 400);
    await rx.close();
  });

  test('(b) a pause whose ttl ends resumes by itself, also across a hub restart', async () => {
    const rx = await receiver('s7.#');
    await api('POST', '/pauses', { selector: 's7:*', ttl: 1 });
    await publish('s7.a', 's7.b');
    await sleep(300);
    assert.equal(rx.seen.length, 0);
    await rx.waitFor(2, 5000);

    await api('POST', '/pauses', { selector: 's7:*', ttl: 3 });
    await publish('s7.c');
    await sleep(300);
    assert.equal(rx.seen.length, 2);
    assert.equal(await hub?.kill('SIGTERM'), 0);
    await sleep(3000); // the pause expires while no hub runs
    hub = await startHubProcess(env());
    await rx.waitFor(3, 10_000);
    assert.equal(rx.seen[2]?.type, 'c');
    await publish('s7.d');
    await rx.waitFor(4);
    assert.equal(rx.seen[3]?.type, 'd');
    await rx.close();
  });

  test('the CLI pauses, lists, resumes and replays over the REST API', async () => {
    const cli = async (...args: string[]) => {
      const p = spawnHerald(args, { HERALD_HUB_URL: `http://127.0.0.1:${port}` });
      const code = await p.exited;
      return { code, out: p.output() };
    };
    const paused = await cli('pause', 's8:*', '--ttl', '2m', '--reason', 'cli');
    assert.equal(paused.code, 0, paused.out);
    const id = paused.out.split(/\s+/)[0] as string;
    assert.match((await cli('pauses')).out, new RegExp(id));
    assert.match((await cli('resume', id)).out, /resumed/);
    const bad = await cli('pause', 's8:*', '--ttl', '5x');
    assert.equal(bad.code, 2, 'a usage error');
    assert.match(bad.out, /invalid --ttl/);
    const replay = await cli('replay', 's7:*', '--last', '2', '--wait');
    assert.equal(replay.code, 0, replay.out);
    assert.match(replay.out, /done: 2 event/);
  });
});
