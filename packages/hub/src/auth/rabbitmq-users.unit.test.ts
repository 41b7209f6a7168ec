import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, HeraldError, parseSelector } from '@herald/core';
import {
  amqpPermissionsOf,
  createRabbitUsers,
  createSenderCheck,
  narrowerKeys,
  subscriberQueuePattern,
  vhostOfAmqpUrl,
} from './rabbitmq-users.ts';
import type { Role } from './types.ts';

const publisher = (...senders: string[]): Role => ({ role: 'publisher', senders });
const subscriber: Role = { role: 'subscriber', selector: parseSelector('billing:*,*:parcel.sent') };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof HeraldError ? err.code : 'not a HeraldError';
  }
  return undefined;
}

describe('amqpPermissionsOf', () => {
  test('a publisher: write on herald.ingest, a topic permission of its senders, herald.events denied, nothing else', () => {
    assert.deepEqual(amqpPermissionsOf('svc', [publisher('shipping', 'billing', 'billing')]), {
      configure: '^$',
      write: '^(herald\\.ingest)$',
      read: '^$',
      topics: [
        { exchange: 'herald.ingest', write: '^(billing|shipping)\\.', read: '^$' },
        { exchange: 'herald.events', write: '^$', read: '^$' },
      ],
    });
  });

  test('a subscriber: its own queues, herald.events to bind from with its binding keys only, herald.dead for its dead letters', () => {
    assert.deepEqual(amqpPermissionsOf('svc', [subscriber]), {
      configure: '^herald-svc\\.[^.]+$',
      write: '^(herald-svc\\.[^.]+|herald\\.dead)$',
      read: '^(herald-svc\\.[^.]+|herald\\.events)$',
      topics: [
        { exchange: 'herald.ingest', write: '^$', read: '^$' },
        { exchange: 'herald.events', write: '^$', read: '^([^.#]+\\.parcel\\.sent|billing(\\.[^.]+)*)$' },
      ],
    });
    // Its selectors' keys and narrower ones: what RabbitMQ then delivers lies inside its selectors.
    const bind = new RegExp(amqpPermissionsOf('svc', [subscriber]).topics[1]?.read ?? '');
    const allowed = ['billing.#', 'billing.invoice.paid', 'billing.invoice.*', 'billing.#.x', '*.parcel.sent', 'crm.parcel.sent'];
    for (const key of allowed) assert.ok(bind.test(key), key);
    for (const key of ['#', '*.#', '*.invoice.paid', 'shipping.#', '#.parcel.sent', '*.parcel.*', 'billingx.y', 'x.billing.y'])
      assert.ok(!bind.test(key), key);
    assert.ok(new RegExp(`^(${narrowerKeys('#')})$`).test('#'), 'a subscriber of *:* may bind anything');
    const middle = new RegExp(`^(${narrowerKeys('*.a.#.b')})$`);
    for (const key of ['x.a.b', '*.a.c.d.b', '*.a.#.b', 'x.a.*.b']) assert.ok(middle.test(key), key);
    for (const key of ['#.a.b', 'x.a.c', 'x.b.b', '*.a.#']) assert.ok(!middle.test(key), key);
  });

  test('both roles: the union; admin and no role: nothing; never herald.events to write', () => {
    const both = amqpPermissionsOf('svc', [{ role: 'admin' }, publisher('crm'), subscriber]);
    assert.equal(both.write, '^(herald\\.ingest|herald-svc\\.[^.]+|herald\\.dead)$');
    assert.equal(both.read, '^(herald-svc\\.[^.]+|herald\\.events)$');
    assert.deepEqual(
      both.topics.map((t) => t.exchange),
      ['herald.ingest', 'herald.events'],
    );
    assert.deepEqual(both.topics[0], { exchange: 'herald.ingest', write: '^(crm)\\.', read: '^$' });
    for (const roles of [[{ role: 'admin' }], [], [publisher()]] as Role[][]) {
      assert.deepEqual(amqpPermissionsOf('svc', roles), {
        configure: '^$',
        write: '^$',
        read: '^$',
        topics: [
          { exchange: 'herald.ingest', write: '^$', read: '^$' },
          { exchange: 'herald.events', write: '^$', read: '^$' },
        ],
      });
    }
    assert.ok(!new RegExp(both.write).test('herald.events'));
  });

  test('the regexes mean what they say (PCRE and JavaScript agree on these)', () => {
    const topic = new RegExp(amqpPermissionsOf('svc', [publisher('billing', 'a_b-c')]).topics[0]?.write ?? '');
    for (const key of ['billing.invoice.paid', 'a_b-c.x']) assert.ok(topic.test(key), key);
    for (const key of ['shipping.x', 'billingx.y', 'billing', 'xbilling.y', 'a_b-cd.x']) assert.ok(!topic.test(key), key);
    // User names may hold dots: each queue belongs to one user, the one before its last dot.
    const a = new RegExp(`^${subscriberQueuePattern('a')}$`);
    const ab = new RegExp(`^${subscriberQueuePattern('a.b')}$`);
    assert.ok(a.test('herald-a.orders'));
    assert.ok(!a.test('herald-a.b.q'), 'a queue of user a.b is not user a’s');
    assert.ok(ab.test('herald-a.b.q'));
    assert.ok(!ab.test('herald-a.b'));
    assert.ok(!a.test('herald-ax.q') && !a.test('herald-a.') && !a.test('xherald-a.q'));
  });

  test('a sender or name that breaks its rule is refused before anything is built', () => {
    assert.equal(
      codeOf(() => amqpPermissionsOf('svc', [publisher('billing|.*')])),
      ErrorCodes.INVALID_SENDER,
    );
    assert.equal(
      codeOf(() => amqpPermissionsOf('s|.*', [subscriber])),
      ErrorCodes.INVALID_REQUEST,
    );
    assert.equal(
      codeOf(() => amqpPermissionsOf('x'.repeat(65), [])),
      ErrorCodes.INVALID_REQUEST,
    );
  });
});

describe('createSenderCheck', () => {
  const roles = new Map<string, readonly Role[]>([
    ['herald-svc', [publisher('billing'), subscriber]],
    ['herald-reader', [subscriber]],
  ]);
  const check = createSenderCheck((u) => roles.get(u));

  test('its own senders pass; another sender is refused with a reason naming both', () => {
    assert.equal(check('herald-svc', 'billing'), undefined);
    assert.equal(check('herald-svc', 'shipping'), 'user_id herald-svc may not publish as sender shipping: its senders are billing');
    assert.equal(check('herald-reader', 'billing'), 'user_id herald-reader may not publish as sender billing: it has no publisher role');
  });

  test('users the hub does not manage pass unchecked', () => {
    assert.equal(check('guest', 'billing'), undefined);
    assert.equal(check('herald-unknown', 'billing'), undefined);
    assert.equal(check('svc', 'shipping'), undefined);
  });
});

test('vhostOfAmqpUrl reads the vhost as amqplib does', () => {
  assert.equal(vhostOfAmqpUrl('amqp://u:p@h:5672'), '/');
  assert.equal(vhostOfAmqpUrl('amqp://h/'), '/');
  assert.equal(vhostOfAmqpUrl('amqp://h/%2F'), '/');
  assert.equal(vhostOfAmqpUrl('amqp://h/prod'), 'prod');
  assert.equal(
    codeOf(() => vhostOfAmqpUrl('not a url')),
    ErrorCodes.INVALID_CONFIG,
  );
});

/** A fetch that records each request and answers with `answer`. */
function fakeFetch(answer: (method: string, path: string, signal: AbortSignal | undefined) => Response | Promise<Response>) {
  const calls: { method: string; path: string; authorization: string | null; href: string; body: unknown }[] = [];
  const fn = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const method = init?.method ?? 'GET';
    const headers = new Headers(init?.headers);
    calls.push({
      method,
      path: url.pathname,
      authorization: headers.get('authorization'),
      href: url.href,
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
    });
    const signal = init?.signal;
    const res = await Promise.race([
      answer(method, url.pathname, init?.signal ?? undefined),
      new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason), { once: true })),
    ]);
    return res;
  }) as typeof fetch;
  return { fn, calls };
}

const API = 'http://admin:s3cret-pw@rabbit:15672';
const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

describe('createRabbitUsers: requests and errors (a fake fetch)', () => {
  test('credentials go in the Authorization header, never in the URL; the vhost is encoded', async () => {
    const f = fakeFetch(() => new Response(null, { status: 204 }));
    const users = createRabbitUsers(`${API}/prefix`, { vhost: '/', fetch: f.fn });
    await users.remove('svc');
    assert.deepEqual(
      f.calls.map((c) => `${c.method} ${c.path}`),
      ['DELETE /prefix/api/users/herald-svc', 'DELETE /prefix/api/connections/username/herald-svc'],
    );
    for (const c of f.calls) {
      assert.equal(c.authorization, `Basic ${Buffer.from('admin:s3cret-pw').toString('base64')}`);
      assert.ok(!c.href.includes('s3cret'));
    }
    await createRabbitUsers(API, { vhost: '/', fetch: f.fn }).create('svc', [publisher('billing')]);
    assert.ok(f.calls.some((c) => c.path === '/api/topic-permissions/%2F/herald-svc'));
  });

  test('create() of a publisher: the user, its topic permissions (herald.events denied), then the write they narrow, then old connections and bindings go', async () => {
    const f = fakeFetch(() => new Response(null, { status: 201 }));
    const creds = await createRabbitUsers(API, { vhost: 'v', fetch: f.fn }).create('svc', [publisher('billing')]);
    assert.deepEqual(
      f.calls.map((c) => `${c.method} ${c.path}`),
      [
        'GET /api/vhosts/v',
        'PUT /api/users/herald-svc',
        'PUT /api/topic-permissions/v/herald-svc',
        'PUT /api/topic-permissions/v/herald-svc',
        'PUT /api/permissions/v/herald-svc',
        'DELETE /api/connections/username/herald-svc',
        'GET /api/exchanges/v/herald.events/bindings/source',
      ],
    );
    assert.deepEqual(f.calls[1]?.body, { password: creds.password, tags: '' });
    assert.deepEqual(f.calls[2]?.body, { exchange: 'herald.ingest', write: '^(billing)\\.', read: '^$' });
    assert.deepEqual(f.calls[3]?.body, { exchange: 'herald.events', write: '^$', read: '^$' });
    assert.deepEqual(f.calls[4]?.body, { configure: '^$', write: '^(herald\\.ingest)$', read: '^$' });
  });

  test('update(): the topic permissions replaced in place (never deleted), then the vhost permissions, then connections and bindings it may no longer make go; unchanged: nothing', async () => {
    const current = { configure: '^$', write: '^(herald\\.ingest)$', read: '^$' };
    const topic = [
      { exchange: 'herald.ingest', write: '^(billing)\\.', read: '^$' },
      { exchange: 'herald.events', write: '^$', read: '^$' },
    ];
    const bindings = [
      { source: 'herald.events', destination: 'herald-svc.all', destination_type: 'queue', routing_key: '#', properties_key: '%23' },
      {
        source: 'herald.events',
        destination: 'herald-svc.mine',
        destination_type: 'queue',
        routing_key: 'billing.#',
        properties_key: 'billing.%23',
      },
      { source: 'herald.events', destination: 'herald-other.all', destination_type: 'queue', routing_key: '#', properties_key: '%23' },
    ];
    const f = fakeFetch((method, path) => {
      if (method !== 'GET') return new Response(null, { status: 204 });
      if (path.startsWith('/api/permissions/')) return json(200, { user: 'herald-svc', vhost: 'v', ...current });
      if (path.startsWith('/api/topic-permissions/')) return json(200, topic);
      if (path.endsWith('/bindings/source')) return json(200, bindings);
      return json(200, { name: 'herald-svc' });
    });
    const users = createRabbitUsers(API, { vhost: 'v', fetch: f.fn });
    await users.update('svc', [publisher('billing')]);
    assert.ok(!f.calls.some((c) => c.method !== 'GET'), 'the same permissions change nothing, close nothing');
    f.calls.length = 0;
    await users.update('svc', [subscriber]);
    assert.deepEqual(
      f.calls.filter((c) => c.method !== 'GET').map((c) => `${c.method} ${c.path}`),
      [
        'PUT /api/topic-permissions/v/herald-svc',
        'PUT /api/topic-permissions/v/herald-svc',
        'PUT /api/permissions/v/herald-svc',
        'DELETE /api/connections/username/herald-svc',
        'DELETE /api/bindings/v/e/herald.events/q/herald-svc.all/%2523',
      ],
    );
    assert.deepEqual(
      f.calls.filter((c) => c.method === 'PUT' && c.path.startsWith('/api/topic-permissions/')).map((c) => c.body),
      [
        { exchange: 'herald.ingest', write: '^$', read: '^$' },
        { exchange: 'herald.events', write: '^$', read: '^([^.#]+\\.parcel\\.sent|billing(\\.[^.]+)*)$' },
      ],
    );
  });

  test('a pattern whose binding key the SDK widens grants its exact key only', () => {
    const long: Role = { role: 'subscriber', selector: parseSelector('*:#.a.b.c.d.e') };
    const read = new RegExp(amqpPermissionsOf('svc', [long]).topics[1]?.read ?? '');
    assert.ok(read.test('*.#.a.b.c.d.e'));
    assert.ok(read.test('x.a.b.c.d.e'));
    for (const key of ['*.#', '#', 'x.#']) assert.ok(!read.test(key), key);
  });

  test('5xx and no answer are UNAVAILABLE, 401 INVALID_CONFIG, a missing user on update NOT_FOUND: one line, the password redacted', async () => {
    /** Never answers; a timer keeps the process alive meanwhile, as a socket would (AbortSignal.timeout's is unref'd). */
    const silent = (_m: string, _p: string, signal: AbortSignal | undefined) =>
      new Promise<Response>(() => {
        const alive = setTimeout(() => undefined, 10_000);
        signal?.addEventListener('abort', () => clearTimeout(alive), { once: true });
      });
    const cases: { answer: Parameters<typeof fakeFetch>[0]; code: string; text: RegExp }[] = [
      {
        answer: () => json(503, { error: 'x', reason: 'boot\nin progress' }),
        code: ErrorCodes.UNAVAILABLE,
        text: /answered 503.*boot in progress/,
      },
      { answer: silent, code: ErrorCodes.UNAVAILABLE, text: /no answer within 50 ms/ },
      { answer: () => Promise.reject(new TypeError('fetch failed')), code: ErrorCodes.UNAVAILABLE, text: /cannot reach .*fetch failed/ },
      {
        answer: () => json(401, { error: 'not_authorised', reason: 'Login failed' }),
        code: ErrorCodes.INVALID_CONFIG,
        text: /refused its credentials \(401/,
      },
      { answer: () => json(404, { error: 'Object Not Found' }), code: ErrorCodes.NOT_FOUND, text: /herald-svc does not exist/ },
    ];
    for (const c of cases) {
      const users = createRabbitUsers(API, { vhost: 'v', fetch: fakeFetch(c.answer).fn, timeoutMs: 50 });
      const err = await users.update('svc', []).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof HeraldError, String(err));
      assert.equal(err.code, c.code, err.message);
      assert.match(err.message, c.text);
      assert.ok(err.message.includes('http://admin:***@rabbit:15672'), err.message);
      assert.ok(!err.message.includes('s3cret') && !err.message.includes('\n'), err.message);
    }
  });

  test('a URL that is not http(s), or without credentials, is INVALID_CONFIG at once', () => {
    for (const url of ['amqp://a:b@h:5672', 'http://h:15672', 'nonsense']) {
      assert.equal(
        codeOf(() => createRabbitUsers(url, { vhost: '/' })),
        ErrorCodes.INVALID_CONFIG,
        url,
      );
    }
  });
});
