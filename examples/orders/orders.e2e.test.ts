// The orders example against a real router hub: the order service and the read model run as
// separate processes, as they would be deployed; the read model is killed (SIGKILL) in the middle
// of the stream and started again, and must end exact: every order, in its state, counted once.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createPublisher } from '@herald/client';
import { createTestDatabase, freePort, type RouterHub, startRouterHub, type TestDatabase, waitFor } from '@herald/testing';
import pg from 'pg';
import { type ExampleProcess, runExample, startExample } from '../test-kit.ts';
import { linesOf, planOf, readStats, runOrder, type Stats } from './demo.ts';
import { totalOf } from './events.ts';

describe('examples/orders against a router hub', { timeout: 170_000 }, () => {
  let fx: RouterHub;
  let db: TestDatabase;
  let env: Record<string, string>;
  const prefix = `t${randomBytes(3).toString('hex')}-`;
  const started: ExampleProcess[] = [];
  let serviceUrl = '';
  let queryUrl = '';

  const start = async (role: 'service' | 'read-model', port: number) => {
    const p = startExample('orders', [role, '--prefix', prefix, '--port', String(port)], env);
    started.push(p);
    await p.waitFor(role === 'service' ? /^order service on / : /^read model on /m, 60_000);
    return p;
  };

  before(async () => {
    [fx, db] = await Promise.all([startRouterHub('orders'), createTestDatabase('orders_example')]);
    env = { ORDERS_DATABASE_URL: db.url, HERALD_AMQP_URL: fx.vhost.url, HERALD_GRPC_URL: fx.grpc, HERALD_HUB_URL: fx.http };
    const [servicePort, queryPort] = [await freePort(), await freePort()];
    serviceUrl = `http://127.0.0.1:${servicePort}`;
    queryUrl = `http://127.0.0.1:${queryPort}`;
    await start('service', servicePort);
    await start('read-model', queryPort);
  });
  after(async () => {
    for (const p of started) await p.kill('SIGKILL');
    await fx?.close();
    await db?.drop();
  });

  const post = async (path: string, body: unknown, type = 'application/json') =>
    fetch(`${serviceUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': type },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  test('commands refuse bad input with a problem naming it; the state machine refuses skipped steps', async () => {
    const line = { sku: 'a', qty: 1, priceCents: 100 };
    const cases: [unknown, number, RegExp][] = [
      ['{not json', 400, /not valid JSON/],
      [[1, 2], 400, /JSON object/],
      [{ customer: 'c\u0000', items: [line] }, 400, /customer must be printable/],
      [{ customer: 'x'.repeat(101), items: [line] }, 400, /customer must be at most 100/],
      [{ customer: 'c', items: [] }, 400, /items must be an array of 1 to 100/],
      [{ customer: 'c', items: Array(101).fill(line) }, 400, /items must be an array/],
      [{ customer: 'c', items: [{ ...line, qty: -1 }] }, 400, /qty must be an integer from 1/],
      [{ customer: 'c', items: [{ ...line, priceCents: 1e300 }] }, 400, /priceCents must be an integer/],
      [{ customer: 'c', items: [{ ...line, sku: 7 }] }, 400, /sku must be a non-empty string/],
      [{ customer: 'c', items: [line], admin: true }, 400, /unknown field "admin"/],
      [{ customer: 'c', items: [line], pad: 'x'.repeat(70_000) }, 413, /exceeds 65536 bytes/],
    ];
    for (const [body, status, detail] of cases) {
      const res = await post('/orders', body);
      assert.equal(res.status, status, JSON.stringify(body).slice(0, 80));
      assert.equal(res.headers.get('content-type'), 'application/problem+json');
      assert.match(((await res.json()) as { detail: string }).detail, detail);
    }
    assert.equal((await post('/orders', 'customer=c', 'text/plain')).status, 415);
    assert.equal((await post(`/orders/${crypto.randomUUID()}/pay`, undefined)).status, 404);
    assert.equal((await post('/orders/not-an-id/pay', undefined)).status, 404);
    const placed = (await (await post('/orders', { customer: 'c', items: [line] })).json()) as { id: string; status: string };
    assert.equal(placed.status, 'placed');
    const early = await post(`/orders/${placed.id}/ship`, undefined);
    assert.equal(early.status, 409);
    assert.match(((await early.json()) as { detail: string }).detail, /is placed; ship needs it paid/);
    assert.equal((await fetch(`${queryUrl}/orders/nope`)).status, 404);
    assert.equal((await fetch(`${queryUrl}/orders/%zz`)).status, 400);
    // That order is in the read model once its event went through (a positive signal, not a sleep).
    await waitFor(
      'the refused commands order in the read model',
      async () => (await fetch(`${queryUrl}/orders/${placed.id}`)).status === 200,
      30_000,
    );
  });

  test('SIGKILL of the read model mid-stream: it resumes and ends exact, each event applied once', async () => {
    const base = await readStats(queryUrl);
    // A poison event on the subscription's selector: recorded as rejected, never blocks the rest.
    const rogue = createPublisher({ sender: `${prefix}orders`, url: fx.vhost.url });
    await rogue.publish('order.placed', { order: 'not-a-uuid', customer: 'mallory' });
    await rogue.close();

    const n = 120;
    const results: Awaited<ReturnType<typeof runOrder>>[] = [];
    const place = async (from: number, to: number) => {
      for (let i = from; i < to; i += 10) {
        const batch = await Promise.all(Array.from({ length: Math.min(10, to - i) }, (_, k) => runOrder(serviceUrl, i + k)));
        results.push(...batch);
      }
    };
    const firstHalf = place(0, n / 2);
    await waitFor('the read model to apply a first part', async () => (await readStats(queryUrl)).placed >= base.placed + 15, 60_000, 20);
    const victim = started.find((p) => /^read model on /m.test(p.stdout()));
    assert.ok(victim);
    assert.equal(await victim.kill('SIGKILL'), 'SIGKILL');
    started.splice(started.indexOf(victim), 1);
    await firstHalf;
    await place(n / 2, n); // while the read model is down: the outbox, the hub and the subscription keep them
    const restarted = await start('read-model', Number(new URL(queryUrl).port));

    const paid = results.filter((o) => o.status !== 'placed');
    const want: Stats = {
      placed: base.placed + n,
      paid: base.paid + paid.length,
      shipped: base.shipped + results.filter((o) => o.status === 'shipped').length,
      revenueCents: base.revenueCents + paid.reduce((s, o) => s + o.totalCents, 0),
      rejected: base.rejected + 1,
      orders: base.orders + n,
    };
    let stats = base;
    await waitFor(
      'the read model to catch up',
      async () => {
        stats = await readStats(queryUrl);
        return stats.placed >= want.placed && stats.paid >= want.paid && stats.shipped >= want.shipped && stats.rejected >= want.rejected;
      },
      60_000,
      50,
    ).catch((err: Error) => assert.fail(`${err.message}: ${JSON.stringify(stats)} of ${JSON.stringify(want)}`));
    assert.deepEqual(stats, want);
    // Batches run one after the other and Promise.all keeps order: results[i] is order i.
    for (const [i, o] of results.entries()) {
      assert.equal(o.status, planOf(i));
      const view = (await (await fetch(`${queryUrl}/orders/${o.id}`)).json()) as {
        status: string;
        totalCents: number;
        paidCents: number | null;
      };
      assert.deepEqual(
        { status: view.status, totalCents: view.totalCents, paidCents: view.paidCents },
        { status: planOf(i), totalCents: totalOf(linesOf(i)), paidCents: planOf(i) === 'placed' ? null : totalOf(linesOf(i)) },
        `order ${i}`,
      );
    }

    // One inbox row per event of this run (places, pays, ships, the rogue one): none applied twice.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM herald_inbox WHERE consumer = $1', [
        `${prefix}orders-read-model`,
      ]);
      // Every event this consumer ever took, the first test's included: each counted once in the stats.
      assert.equal(Number(rows[0]?.n), want.placed + want.paid + want.shipped + want.rejected);
    } finally {
      await client.end();
    }
    const skipped = () => (restarted.stderr().match(/was handled already: skipped/g) ?? []).length;
    const afterKill = skipped();

    // Deliver 40 events a second time on purpose (a replay into this one subscription): the inbox
    // skips every one of them, and nothing in the read model moves.
    const replay = await fetch(`${fx.http}/api/v1/replays`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        selector: `${prefix}orders:order.*`,
        from: { last: 40 },
        target: { subscription: `${prefix}orders-read-model` },
      }),
    });
    assert.equal(replay.status, 202, await replay.text());
    await waitFor('the replayed events to be skipped', () => skipped() >= afterKill + 40, 30_000, 20);
    assert.deepEqual(await readStats(queryUrl), want);
    // Ctrl-C or SIGTERM: the read model detaches (its acks sent first) and exits 0.
    assert.equal(await restarted.kill('SIGTERM'), 0, restarted.stderr());
    console.log(
      `read model: killed after ≥15 orders and restarted (${afterKill} redeliveries skipped); a replay of 40 skipped, stats unchanged`,
    );
  });

  test('npm run example -- orders: the demo creates its database, runs every part and ends exact', async () => {
    const name = `herald_test_orders_demo_${randomBytes(4).toString('hex')}`;
    const url = new URL(db.url);
    url.pathname = `/${name}`;
    try {
      const run = await runExample('orders', ['--prefix', `d${prefix}`, '--orders', '9'], { ...env, ORDERS_DATABASE_URL: url.href });
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.match(run.stdout, /commands answered: 9 placed, 6 paid, 3 shipped/);
      assert.match(run.stdout, /GET \/stats {2}\{"placed":9,"paid":6,"shipped":3,"revenueCents":\d+,"rejected":0,"orders":9\}/);
      assert.match(run.stdout, /every command is in the read model exactly once/);
    } finally {
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => admin.end());
    }
  });

  test('the service put its three types in the hub catalog; the hub observes the relay producing and the read model consuming', async () => {
    type Type = { version: number; validate: boolean; producers: { sender: string }[]; consumers: { kind: string; name: string }[] };
    const get = async (type: string) => (await (await fetch(`${fx.http}/api/v1/catalog/${prefix}orders/${type}`)).json()) as Type;
    for (const type of ['order.placed', 'order.paid', 'order.shipped']) {
      const t = await get(type);
      assert.equal(t.version, 1, type);
      assert.equal(t.validate, false, `${type}: the read model checks payloads itself (rejected_events)`);
    }
    let placed = await get('order.placed');
    await waitFor(
      'order.placed observed with its producer and the read model as consumer',
      async () => {
        placed = await get('order.placed');
        return placed.producers.length > 0 && placed.consumers.length > 0;
      },
      30_000,
      250,
    );
    // One producer per RabbitMQ user seen: the relay's, and the test's rogue publisher's if another.
    assert.deepEqual([...new Set(placed.producers.map((p) => p.sender))], [`${prefix}orders`]);
    assert.deepEqual(
      placed.consumers.map((c) => [c.kind, c.name]),
      [['subscription', `${prefix}orders-read-model`]],
    );
  });
});
