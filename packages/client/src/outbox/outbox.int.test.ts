import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { INGEST_EXCHANGE, isUuid } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost, waitFor } from '@herald/testing';
import { type Channel, type ChannelModel, type ConsumeMessage, connect } from 'amqplib';
import pg from 'pg';
import { createPublisher, declareTopology, HeraldError } from '../index.ts';
import { createInbox, createOutbox, createOutboxRelay, migrateOutbox, type OutboxRelay } from './index.ts';

// The outbox against real PostgreSQL and RabbitMQ, without a hub: a queue bound to herald.ingest
// with `#` sees every message a relay publishes, duplicates included.

let db: TestDatabase;
let vhost: TestVhost;
let pool: pg.Pool;
let conn: ChannelModel;
let ch: Channel;
const relays: OutboxRelay[] = [];

/** A queue bound to herald.ingest: every message published there, in arrival order. */
async function ingestTap(): Promise<{ messages: ConsumeMessage[]; ids(): string[] }> {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, INGEST_EXCHANGE, '#');
  const messages: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => m && messages.push(m), { noAck: true });
  return { messages, ids: () => messages.map((m) => m.properties.messageId as string) };
}

function relay(extra: Partial<Parameters<typeof createOutboxRelay>[0]> = {}): OutboxRelay {
  const r = createOutboxRelay({
    database: db.url,
    url: vhost.url,
    pollIntervalMs: 200,
    standbyIntervalMs: 100,
    retryDelayMs: 50,
    ...extra,
  });
  relays.push(r);
  return r;
}

async function tx<T>(fn: (client: pg.PoolClient) => Promise<T>, commit = true): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const r = await fn(client);
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    return r;
  } finally {
    client.release();
  }
}

async function pendingRows(): Promise<number> {
  const { rows } = await pool.query('SELECT count(*)::int AS n FROM herald_outbox WHERE sent_at IS NULL AND failed_at IS NULL');
  return rows[0].n;
}

before(async () => {
  [db, vhost] = await Promise.all([createTestDatabase('outbox'), createTestVhost('outbox')]);
  await declareTopology({ url: vhost.url, mode: 'router' });
  pool = new pg.Pool({ connectionString: db.url, max: 8 });
  conn = await connect(vhost.url);
  ch = await conn.createChannel();
});

after(async () => {
  for (const r of relays) await r.stop().catch(() => undefined);
  await conn?.close().catch(() => undefined);
  await pool?.end().catch(() => undefined);
  await vhost?.delete().catch(() => undefined);
  await db?.drop().catch(() => undefined);
});

describe('migrateOutbox', () => {
  test('run by eight connections at once on an empty database, creates the tables once, and again is a no-op', async () => {
    const clients = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const c = new pg.Client({ connectionString: db.url });
        await c.connect();
        return c;
      }),
    );
    try {
      await Promise.all(clients.map((c) => migrateOutbox(c)));
      await Promise.all(clients.slice(0, 3).map((c) => migrateOutbox(c, { schema: 'svc', outboxTable: 'events_out' })));
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    await migrateOutbox(pool);
    const { rows } = await pool.query(
      "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_name IN ('herald_outbox', 'herald_inbox', 'events_out') ORDER BY 1",
    );
    assert.deepEqual(
      rows.map((r) => r.t),
      ['public.herald_inbox', 'public.herald_outbox', 'svc.events_out', 'svc.herald_inbox'],
    );
  });

  test('refuses table names that are not plain identifiers', async () => {
    await assert.rejects(migrateOutbox(pool, { outboxTable: 'x"; DROP TABLE herald_outbox; --' }), (err: unknown) => {
      assert.ok(err instanceof HeraldError && err.code === 'INVALID_CONFIG' && err.message.includes('outboxTable'));
      return true;
    });
  });
});

describe('outbox.add', () => {
  before(() => migrateOutbox(pool));
  const outbox = createOutbox();
  const hostile: [string, Record<string, unknown>, string, string][] = [
    ['NUL in the sender', { sender: 'or\u0000ders', type: 'order.placed' }, 'INVALID_SENDER', 'sender'],
    ['a bad sender', { sender: 'orders service', type: 'order.placed' }, 'INVALID_SENDER', 'sender'],
    ['NUL in the type', { sender: 'orders', type: 'order.\u0000placed' }, 'INVALID_TYPE', 'type'],
    ['a bad type', { sender: 'orders', type: 'order..placed' }, 'INVALID_TYPE', 'type'],
    ['a huge payload', { sender: 'orders', type: 'order.placed', payload: 'x'.repeat(1024 * 1024 + 1) }, 'EVENT_TOO_LARGE', 'exceeds'],
    ['NUL in the subject', { sender: 'orders', type: 'order.placed', subject: 'a\u0000b' }, 'INVALID_EVENT', 'subject'],
    ['NUL in the key', { sender: 'orders', type: 'order.placed', key: 'k\u0000' }, 'INVALID_EVENT', 'key'],
    ['a key past 255 bytes', { sender: 'orders', type: 'order.placed', key: 'k'.repeat(256) }, 'INVALID_EVENT', 'key'],
    ['a key that is not a string', { sender: 'orders', type: 'order.placed', key: 42 }, 'INVALID_EVENT', 'key'],
    ['an id that is no UUID', { sender: 'orders', type: 'order.placed', id: "1'; DROP TABLE herald_outbox; --" }, 'INVALID_EVENT', 'id'],
    ['a time out of range', { sender: 'orders', type: 'order.placed', time: -1 }, 'INVALID_EVENT', 'time'],
    ['NUL in a header value', { sender: 'orders', type: 'order.placed', headers: { h: 'a\u0000' } }, 'INVALID_EVENT', 'headers.h'],
    ['a contract header', { sender: 'orders', type: 'order.placed', headers: { 'x-herald-offset': '1' } }, 'INVALID_EVENT', 'headers'],
  ];
  for (const [what, event, code, mentions] of hostile) {
    test(`refuses ${what} with ${code}, before any SQL: the caller's transaction goes on`, async () => {
      const committed = await tx(async (client) => {
        await assert.rejects(outbox.add(client, event as never), (err: unknown) => {
          assert.ok(err instanceof HeraldError, `expected a HeraldError, got ${String(err)}`);
          assert.equal(err.code, code);
          assert.ok(err.message.includes(mentions), `${err.message} should mention ${mentions}`);
          return true;
        });
        const { rows } = await client.query('SELECT 1 AS ok');
        return rows[0].ok;
      });
      assert.equal(committed, 1);
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM herald_outbox');
      assert.equal(rows[0].n, 0);
    });
  }

  test('gives a UUIDv7 id and adds an id once however often it is added', async () => {
    const id = await tx(async (client) => {
      const id = await outbox.add(client, { sender: 'orders', type: 'order.placed', payload: { n: 1 }, key: 'o-1' });
      await outbox.add(client, { sender: 'orders', type: 'order.placed', payload: { n: 2 }, key: 'o-1', id });
      return id;
    });
    assert.ok(isUuid(id) && id[14] === '7', id);
    const { rows } = await pool.query('SELECT data FROM herald_outbox WHERE id = $1', [id]);
    assert.deepEqual(
      rows.map((r) => JSON.parse(r.data.toString())),
      [{ n: 1 }],
    );
    await pool.query('DELETE FROM herald_outbox');
  });
});

describe('the relay', () => {
  before(() => migrateOutbox(pool));
  test('publishes what committed, never what rolled back, and each message is what createPublisher sends', async () => {
    const tap = await ingestTap();
    const outbox = createOutbox();
    const time = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    const fields = { subject: 'o-7', correlationId: 'c-1', causationId: 'k-1', time, headers: { tenant: 'acme' } };
    const rolledBack = await tx(
      (c) => outbox.add(c, { sender: 'orders', type: 'order.placed', payload: { rolled: 'back' }, key: 'o-7' }),
      false,
    );
    const committed = await tx((c) =>
      outbox.add(c, { sender: 'orders', type: 'order.placed', payload: { total: 42 }, key: 'o-7', ...fields }),
    );
    const r = relay();
    await r.start();
    await waitFor('the committed row on herald.ingest', () => tap.ids().includes(committed), 20_000);
    // The same event through the SDK's publisher, to compare the wire form.
    const publisher = createPublisher({ sender: 'orders', url: vhost.url });
    const twin = 'e8a4d4a4-3c39-4d2b-8f3b-1c1f6a7b0c11';
    await publisher.publish('order.placed', { total: 42 }, { id: twin, ...fields });
    await publisher.close();
    await waitFor('the publisher twin', () => tap.ids().includes(twin), 10_000);
    const a = tap.messages.find((m) => m.properties.messageId === committed) as ConsumeMessage;
    const b = tap.messages.find((m) => m.properties.messageId === twin) as ConsumeMessage;
    assert.equal(a.fields.routingKey, b.fields.routingKey);
    assert.deepEqual(a.content, b.content);
    assert.deepEqual({ ...a.properties, messageId: twin }, b.properties);
    assert.ok(!tap.ids().includes(rolledBack), 'the rolled-back row was published');
    await waitFor('the row marked sent', async () => (await pendingRows()) === 0, 5000);
    await r.stop();
  });

  test('two relays on one database: one active, each row published once; the other takes over when it stops', async () => {
    const tap = await ingestTap();
    const outbox = createOutbox();
    const a = relay({ batchSize: 20 });
    const b = relay({ batchSize: 20 });
    await a.start();
    await b.start();
    await waitFor('one relay active, one on standby', () => [a.stats.state, b.stats.state].sort().join() === 'active,standby', 10_000);
    const ids: string[] = [];
    const adding = (from: number, to: number) =>
      Promise.all(
        Array.from({ length: 10 }, (_, w) =>
          (async () => {
            for (let i = from + w; i < to; i += 10)
              ids.push(await tx((c) => outbox.add(c, { sender: 'orders', type: 'order.paid', payload: { i }, key: `k${i % 7}` })));
          })(),
        ),
      );
    await adding(0, 300);
    await waitFor('300 rows on herald.ingest', () => tap.messages.length >= 300, 30_000);
    const active = a.stats.state === 'active' ? a : b;
    const standby = active === a ? b : a;
    await active.stop();
    await waitFor('the standby relay active', () => standby.stats.state === 'active', 10_000);
    await adding(300, 400);
    await waitFor('400 rows on herald.ingest', () => tap.messages.length >= 400, 30_000);
    await waitFor('nothing pending', async () => (await pendingRows()) === 0, 10_000);
    const seen = tap.ids();
    assert.equal(seen.length, 400, 'a row was published twice');
    assert.deepEqual([...seen].sort(), [...ids].sort());
    assert.equal(a.stats.published + b.stats.published, 400);
    await standby.stop();
  });

  test('keeps the order of each key across concurrent transactions, and wakes on NOTIFY well before its poll', async () => {
    const tap = await ingestTap();
    const outbox = createOutbox();
    const r = relay({ pollIntervalMs: 60_000 });
    await r.start();
    await waitFor('the relay active', () => r.stats.state === 'active', 10_000);
    // Eight writers on three keys; each event carries its key's sequence number, taken under the key's lock.
    const order = new Map<string, number>();
    await Promise.all(
      Array.from({ length: 8 }, (_, w) =>
        (async () => {
          for (let i = 0; i < 25; i++) {
            const key = `agg-${(w + i) % 3}`;
            await tx(async (c) => {
              await outbox.add(c, { sender: 'orders', type: 'order.changed', payload: { key, at: -1 }, key });
              // After add, the key is locked: the counter below is this transaction's place in the key's order.
              const n = order.get(key) ?? 0;
              order.set(key, n + 1);
              await c.query(
                `UPDATE herald_outbox SET data = convert_to($1, 'UTF8') WHERE seq = (SELECT max(seq) FROM herald_outbox WHERE key = $2)`,
                [JSON.stringify({ key, at: n }), key],
              );
            });
          }
        })(),
      ),
    );
    const started = Date.now();
    await waitFor('200 rows published', () => tap.messages.length >= 200, 20_000);
    assert.ok(Date.now() - started < 20_000);
    const perKey = new Map<string, number[]>();
    for (const m of tap.messages) {
      const { key, at } = JSON.parse(m.content.toString()) as { key: string; at: number };
      perKey.set(key, [...(perKey.get(key) ?? []), at]);
    }
    for (const [key, seq] of perKey)
      assert.deepEqual(
        seq,
        [...seq].sort((x, y) => x - y),
        `${key} out of order`,
      );
    await r.stop();
  });

  test('parks a row that breaks the limits and publishes the rows behind it', async () => {
    const tap = await ingestTap();
    const outbox = createOutbox();
    const parked: string[] = [];
    const r = relay();
    r.on('parked', (p) => parked.push(p.reason));
    const before = await tx((c) => outbox.add(c, { sender: 'orders', type: 'order.placed', key: 'p' }));
    // A row written by hand, around add's checks: a sender with a space.
    await pool.query(
      "INSERT INTO herald_outbox (id, sender, type, time_ms, content_type, data) VALUES ('0199a000-0000-7000-8000-000000000001', 'bad sender', 'x', 0, 'application/json', '\\x6e756c6c')",
    );
    const behind = await tx((c) => outbox.add(c, { sender: 'orders', type: 'order.placed', key: 'p' }));
    await r.start();
    await waitFor('the row behind published', () => tap.ids().includes(behind), 20_000);
    assert.deepEqual(tap.ids(), [before, behind]);
    assert.equal(parked.length, 1);
    assert.match(parked[0] as string, /sender/);
    const { rows } = await pool.query('SELECT last_error FROM herald_outbox WHERE failed_at IS NOT NULL');
    assert.equal(rows.length, 1);
    assert.match(rows[0].last_error, /cannot be published: .*sender/);
    await pool.query('DELETE FROM herald_outbox WHERE failed_at IS NOT NULL');
    await r.stop();
  });
});

describe('retention', () => {
  before(() => migrateOutbox(pool));

  for (const retentionMs of [0, 300]) {
    test(`retentionMs ${retentionMs}: published rows are ${retentionMs === 0 ? 'deleted once confirmed' : 'kept marked sent, then deleted'}`, async () => {
      const tap = await ingestTap();
      const outbox = createOutbox();
      const id = await tx((c) => outbox.add(c, { sender: 'orders', type: 'order.kept', key: 'ret' }));
      const r = relay({ retentionMs });
      await r.start();
      try {
        await waitFor('the row published', () => tap.ids().includes(id), 10_000);
        const count = async () => (await pool.query('SELECT count(*)::int AS n FROM herald_outbox WHERE id = $1', [id])).rows[0].n;
        const sent = async () =>
          (await pool.query('SELECT count(*)::int AS n FROM herald_outbox WHERE id = $1 AND sent_at IS NOT NULL', [id])).rows[0].n;
        if (retentionMs > 0) await waitFor('the row marked sent', async () => (await sent()) === 1, 10_000, 20);
        await waitFor('the row deleted', async () => (await count()) === 0, 10_000);
      } finally {
        await r.stop();
      }
    });
  }
});

describe('the relay in trouble', () => {
  before(() => migrateOutbox(pool));

  test('a row RabbitMQ nacks every time is parked after maxAttempts, and the rows behind it are published', async () => {
    // A queue that takes nothing over 500 bytes and refuses (nacks) instead of dropping.
    await ch.assertQueue('outbox-tiny', { durable: false, arguments: { 'x-max-length-bytes': 500, 'x-overflow': 'reject-publish' } });
    await ch.bindQueue('outbox-tiny', INGEST_EXCHANGE, 'orders.order.huge');
    const tap = await ingestTap();
    const outbox = createOutbox();
    const ids = await tx(async (c) => [
      await outbox.add(c, { sender: 'orders', type: 'order.placed', key: 'n' }),
      await outbox.add(c, { sender: 'orders', type: 'order.huge', payload: 'x'.repeat(2000), key: 'n' }),
      await outbox.add(c, { sender: 'orders', type: 'order.placed', key: 'n' }),
    ]);
    const parked: { id: string; reason: string }[] = [];
    const r = relay({ maxAttempts: 3 });
    r.on('parked', (p) => parked.push(p));
    await r.start();
    await waitFor('the refused row parked', () => parked.length > 0, 20_000).finally(() => r.stop());
    assert.ok(tap.ids().includes(ids[2] as string), 'the row behind the refused one was not published');
    assert.deepEqual(
      parked.map((p) => p.id),
      [ids[1]],
    );
    assert.match(parked[0]?.reason as string, /nack/);
    const { rows } = await pool.query('SELECT attempts, failed_at IS NOT NULL AS parked FROM herald_outbox WHERE id = $1', [ids[1]]);
    assert.deepEqual(rows[0], { attempts: 3, parked: true });
    // On the wire: the first row once, the refused one (nacked, so not taken) tried, the last row once.
    assert.equal(tap.ids().filter((id) => id === ids[0]).length, 1);
    assert.equal(tap.ids().filter((id) => id === ids[2]).length, 1);
    await ch.deleteQueue('outbox-tiny');
    await pool.query('DELETE FROM herald_outbox WHERE failed_at IS NOT NULL');
  });

  test('goes on after RabbitMQ drops its connection and PostgreSQL ends its session', async () => {
    // The drop closes every connection of the vhost, the test's own too: a durable queue keeps the tap.
    await ch.assertQueue('outbox-reconnect-tap', { durable: true });
    await ch.bindQueue('outbox-reconnect-tap', INGEST_EXCHANGE, '#');
    const outbox = createOutbox();
    const errors: string[] = [];
    const r = relay({ reconnectInitialDelayMs: 20, onError: (err) => errors.push(err.message) });
    await r.start();
    await waitFor('the relay active', () => r.stats.state === 'active', 10_000);
    const ids: string[] = [];
    const add = async (n: number) => {
      for (let i = 0; i < n; i++) ids.push(await tx((c) => outbox.add(c, { sender: 'orders', type: 'order.paid', key: `r${i % 3}` })));
    };
    await add(50);
    await waitFor('the first 50 published', async () => r.stats.published >= 50 && (await pendingRows()) === 0, 20_000);
    // The management API lists a new connection after a while: drop until the relay's was among them.
    await waitFor(
      'the relay told of its lost RabbitMQ connection',
      async () => (await vhost.dropConnections()) >= 0 && errors.some((m) => /lost RabbitMQ connection/.test(m)),
      30_000,
      500,
    );
    conn = await connect(vhost.url);
    ch = await conn.createChannel();
    const { rows } = await pool.query(
      "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = 'herald-outbox-relay' AND datname = current_database()",
    );
    assert.equal(rows.length, 1);
    await add(50);
    await waitFor('all 100 published', async () => r.stats.published >= 100 && (await pendingRows()) === 0, 30_000);
    assert.equal(r.stats.state, 'active');
    await waitFor('the lost session reported', () => errors.some((m) => /lost the session/.test(m)), 10_000);
    await r.stop();
    const seen = new Set<string>();
    for (let m = await ch.get('outbox-reconnect-tap', { noAck: true }); m; m = await ch.get('outbox-reconnect-tap', { noAck: true }))
      seen.add(m.properties.messageId as string);
    assert.deepEqual([...seen].sort(), [...ids].sort());
    await ch.deleteQueue('outbox-reconnect-tap');
  });
});

describe('the inbox', () => {
  before(() => migrateOutbox(pool));
  test('runs the handler once per event and consumer; a redelivery is skipped; a throwing handler leaves no record', async () => {
    await pool.query('CREATE TABLE read_model (event_id uuid PRIMARY KEY, n int NOT NULL)');
    const inbox = createInbox({ consumer: 'read-model' });
    const other = createInbox({ consumer: 'audit' });
    const event = { id: '0199a000-0000-7000-8000-0000000000aa' };
    const write = (c: pg.PoolClient) => c.query('INSERT INTO read_model VALUES ($1, 1)', [event.id]).then(() => undefined);
    await assert.rejects(
      inbox.handle(pool, event, async (c) => {
        await write(c);
        throw new Error('handler failed');
      }),
      /handler failed/,
    );
    assert.equal(await inbox.handle(pool, event, write), true);
    assert.equal(await inbox.handle(pool, event, write), false);
    assert.equal(await other.handle(pool, event, async () => undefined), true);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM read_model');
    assert.equal(rows[0].n, 1);
    await assert.rejects(
      inbox.handle(pool, { id: 'nope' }, write),
      (err: unknown) => err instanceof HeraldError && err.code === 'INVALID_EVENT',
    );
  });

  test('with a subscriber: an event delivered twice (same message id) is applied once', async () => {
    const { createSubscriber } = await import('../index.ts');
    await pool.query('CREATE TABLE totals (k text PRIMARY KEY, total int NOT NULL)');
    await pool.query("INSERT INTO totals VALUES ('t', 0)");
    const inbox = createInbox({ consumer: 'totals' });
    const outcomes: boolean[] = [];
    const subscriber = createSubscriber({ selector: 'shop:order.placed', url: vhost.url }, async (event) => {
      outcomes.push(
        await inbox.handle(pool, event, async (c) => {
          await c.query("UPDATE totals SET total = total + 1 WHERE k = 't'");
        }),
      );
    });
    try {
      await subscriber.queue;
      // What a redelivery looks like to a handler: the same event id a second time.
      const id = '0199a000-0000-7000-8000-0000000000bb';
      for (let i = 0; i < 2; i++)
        ch.publish('herald.events', 'shop.order.placed', Buffer.from('{}'), { messageId: id, appId: 'shop', type: 'order.placed' });
      await waitFor('two deliveries handled', () => outcomes.length === 2, 10_000);
    } finally {
      await subscriber.close();
    }
    assert.deepEqual(outcomes, [true, false]);
    const { rows } = await pool.query("SELECT total FROM totals WHERE k = 't'");
    assert.equal(rows[0].total, 1);
  });
});
