// The intake of herald.dead against real RabbitMQ, on PostgreSQL and on the embedded store: what
// reaches herald.dead is kept in dead_letters with its attempts and failure times, sanitized
// whatever it holds (no headers, huge headers, NUL bytes, bytes that are not UTF-8); the hub's own
// are acknowledged and not kept twice; a message redelivered (after its row was written but before
// its ack) or retried after an outage is kept once; nothing stops the intake.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createEvent, DEAD_EXCHANGE, DEAD_STORE_QUEUE, Headers } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  publishWithHugeHeaders,
  type RawPublisher,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import { connect } from 'amqplib';
import { pino } from 'pino';
import { createDeadLetterStore, type DeadLetterStore, openStore, type ReceivedDeadLetter, type StoredDeadLetter } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { createDeadLetterIntake, DEAD_STORE_MAX_BYTES, type DeadLetterIntake } from './intake.ts';
import { MAX_KEPT_BODY_BYTES } from './received.ts';

const logger = () => pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' });

/** The store, with hooks: `beforeWrite` may throw (an outage), `afterWrite` runs once the rows are in. */
function hooked(real: DeadLetterStore) {
  const hooks: { beforeWrite?: (letters: readonly ReceivedDeadLetter[]) => void; afterWrite?: () => Promise<void> } = {};
  let writes = 0;
  const store: DeadLetterStore = {
    ...real,
    async addReceived(letters) {
      writes++;
      hooks.beforeWrite?.(letters);
      const n = await real.addReceived(letters);
      await hooks.afterWrite?.();
      return n;
    },
  };
  return { store, hooks, writes: () => writes };
}

function intakeSuite(name: string, open: () => Promise<{ store: Store; cleanup(): Promise<void> }>): void {
  describe(`dead letter intake (int: RabbitMQ, ${name})`, () => {
    let vhost: TestVhost;
    let opened: { store: Store; cleanup(): Promise<void> };
    let letters: DeadLetterStore;
    let hooks: ReturnType<typeof hooked>;
    let intake: DeadLetterIntake;
    let pub: RawPublisher;

    before(async () => {
      vhost = await createTestVhost('intake');
      opened = await open();
      await opened.store.migrate();
      letters = createDeadLetterStore(opened.store.sql);
      hooks = hooked(letters);
      intake = createDeadLetterIntake({ amqpUrl: vhost.url, store: hooks.store, logger: logger() });
      intake.start();
      await waitFor('the intake consuming', () => intake.isConsuming(), 15_000);
      pub = await createRawPublisher(vhost.url);
    });
    after(async () => {
      await pub?.close();
      await intake?.stop();
      await opened?.store.close();
      await opened?.cleanup();
      await vhost?.delete();
    });

    const all = () => letters.list({}, 0n, 1000);
    const byMessageId = async (id: string) => (await all()).filter((l) => l.messageId === id);
    const one = async (id: string): Promise<StoredDeadLetter> => {
      let found: StoredDeadLetter[] = [];
      await waitFor(
        `dead letter ${id} kept`,
        async () => {
          found = await byMessageId(id);
          return found.length > 0;
        },
        15_000,
        50,
      );
      assert.equal(found.length, 1, `${id} kept once`);
      return found[0] as StoredDeadLetter;
    };
    const dead = (routingKey: string, messageId: string, headers: Record<string, unknown> | undefined, content = Buffer.from('{"a":1}')) =>
      pub.publish(DEAD_EXCHANGE, { routingKey, content, options: { messageId, headers, persistent: true } });

    test('declares herald.dead.store, durable, single active consumer, bounded in bytes (the oldest dropped), bound with #', async () => {
      const conn = await connect(vhost.url);
      try {
        const ch = await conn.createChannel();
        // The same arguments are equivalent (RabbitMQ closes the channel on any other).
        await ch.assertQueue(DEAD_STORE_QUEUE, {
          durable: true,
          arguments: { 'x-single-active-consumer': true, 'x-max-length-bytes': DEAD_STORE_MAX_BYTES, 'x-overflow': 'drop-head' },
        });
      } finally {
        await conn.close();
      }
      // The management API's counts lag a few seconds behind.
      await waitFor(
        'one consumer on herald.dead.store',
        async () => {
          const q = (await vhost.queues()).find((x) => x.name === DEAD_STORE_QUEUE);
          return q?.consumers === 1;
        },
        15_000,
        200,
      );
    });

    test("a subscriber's dead letter: kept with its reason, code, attempts, first and last failure, queue, bytes", async () => {
      const first = Date.now() - 2000;
      const last = Date.now() - 100;
      assert.ok(
        await dead('billing.invoice.paid', 'sdk-1', {
          tenant: 'acme',
          [Headers.DEAD_REASON]: 'boom',
          [Headers.DEAD_CODE]: 'HANDLER_FAILED',
          [Headers.ATTEMPTS]: 5,
          [Headers.FIRST_FAILED_AT]: first,
          [Headers.LAST_FAILED_AT]: last,
          [Headers.ORIGINAL_EXCHANGE]: 'herald.events',
          [Headers.ORIGINAL_ROUTING_KEY]: 'billing.invoice.paid',
          [Headers.ORIGINAL_QUEUE]: 'billing-q',
        }),
      );
      const l = await one('sdk-1');
      assert.deepEqual(
        [l.source, l.reason, l.code, l.attempts, l.firstFailedAt, l.lastFailedAt, l.queue, l.exchange, l.routingKey],
        ['subscriber', 'boom', 'HANDLER_FAILED', 5, first, last, 'billing-q', 'herald.events', 'billing.invoice.paid'],
      );
      assert.equal(l.body.toString(), '{"a":1}');
      assert.equal((l.properties.headers as Record<string, unknown>).tenant, 'acme');
      assert.equal((await letters.list({ source: 'subscriber' }, 0n, 1000)).length >= 1, true);
      assert.equal((await letters.list({ source: 'hub' }, 0n, 1000)).length, 0);
    });

    test("the hub's own (x-herald-dead-stored, from the hub's AMQP user) are acknowledged, not kept again; the rest of the batch is", async () => {
      const skippedBefore = intake.stats().skipped;
      const hubUser = decodeURIComponent(new URL(vhost.url).username || 'guest');
      const own = { [Headers.DEAD_REASON]: 'x', [Headers.DEAD_STORED]: 'true' };
      assert.ok(
        await pub.publish(DEAD_EXCHANGE, {
          routingKey: 'a.b',
          content: Buffer.from('{}'),
          options: { messageId: 'hub-own', userId: hubUser, headers: own },
        }),
      );
      assert.ok(await dead('a.b', 'after-own', { [Headers.DEAD_REASON]: 'y' }));
      await one('after-own');
      await waitFor('the own one counted as skipped', () => intake.stats().skipped > skippedBefore, 5000, 20);
      assert.equal((await byMessageId('hub-own')).length, 0);
    });

    test("the hub's marks count only from the hub's AMQP user: a forged one is kept as a subscriber's; the hub's own it could not keep is kept as the hub's", async () => {
      const hubUser = decodeURIComponent(new URL(vhost.url).username || 'guest');
      const someone = await vhost.addUser('someone', { configure: '', write: '.*', read: '' });
      const theirs = await createRawPublisher(someone.url);
      try {
        const marked = (stored: string) => ({ [Headers.DEAD_REASON]: 'm', [Headers.DEAD_STORED]: stored });
        const msg = (messageId: string, stored: string, userId?: string) => ({
          routingKey: 'a.b',
          content: Buffer.from('{}'),
          options: { messageId, headers: marked(stored), ...(userId === undefined ? {} : { userId }) },
        });
        assert.ok(await theirs.publish(DEAD_EXCHANGE, msg('forged-kept', 'true', someone.user)));
        assert.ok(await theirs.publish(DEAD_EXCHANGE, msg('forged-no-user', 'true')));
        assert.ok(await theirs.publish(DEAD_EXCHANGE, msg('forged-not-kept', 'false', someone.user)));
        assert.ok(await pub.publish(DEAD_EXCHANGE, msg('hub-not-kept', 'false', hubUser)));
      } finally {
        await theirs.close();
      }
      for (const id of ['forged-kept', 'forged-no-user', 'forged-not-kept']) assert.equal((await one(id)).source, 'subscriber', id);
      assert.equal((await one('hub-not-kept')).source, 'hub');
    });

    test(`a body over ${MAX_KEPT_BODY_BYTES} bytes: kept cut there, the cut noted`, async () => {
      assert.ok(await dead('big.body', 'big-body', { [Headers.DEAD_REASON]: 'big' }, Buffer.alloc(MAX_KEPT_BODY_BYTES + 100, 0x61)));
      const l = await one('big-body');
      assert.equal(l.body.length, MAX_KEPT_BODY_BYTES);
      assert.deepEqual((l.properties.sanitized as { bodyTruncated?: unknown }).bodyTruncated, {
        bytes: MAX_KEPT_BODY_BYTES + 100,
        kept: MAX_KEPT_BODY_BYTES,
      });
    });

    test('a unique violation from the store is a duplicate: counted as skipped, acknowledged, the flow goes on', async () => {
      const skippedBefore = intake.stats().skipped;
      hooks.hooks.beforeWrite = (letters) => {
        if (letters.some((l) => l.messageId === 'clash'))
          throw Object.assign(new Error('duplicate key value violates unique constraint "dead_letters_pkey"'), { code: '23505' });
      };
      try {
        assert.ok(await dead('clash.one', 'clash', { [Headers.DEAD_REASON]: 'c' }));
        assert.ok(await dead('clash.after', 'after-clash', { [Headers.DEAD_REASON]: 'c' }));
        await one('after-clash');
      } finally {
        hooks.hooks.beforeWrite = undefined;
      }
      assert.equal((await byMessageId('clash')).length, 0);
      assert.ok(intake.stats().skipped > skippedBefore);
      assert.equal(intake.stats().refused, 0);
    });

    test('malformed: no headers, NUL bytes, bytes that are not UTF-8, huge headers: each kept sanitized, the flow goes on', async () => {
      assert.ok(await dead('plain', 'no-headers', undefined, Buffer.from([0xff, 0xfe, 0x00])));
      assert.ok(
        await dead('nul.key', 'nul\u0000id', {
          [Headers.DEAD_REASON]: 'nul\u0000reason',
          'bad\u0000name': 'v\u0000',
          [Headers.ORIGINAL_QUEUE]: 'q\u0000',
          bin: Buffer.from([0xc3, 0x28, 0x00, 0xff]),
          [Headers.DEAD_CODE]: Buffer.from([0xff]),
          [Headers.ATTEMPTS]: 'not a number',
          [Headers.LAST_FAILED_AT]: -5,
        }),
      );
      const wide: Record<string, unknown> = { [Headers.DEAD_REASON]: 'r'.repeat(20_000) };
      for (let i = 0; i < 10; i++) wide[`h${i}`] = 'v'.repeat(9000);
      await publishWithHugeHeaders(vhost.url, DEAD_EXCHANGE, 'huge.headers', wide, 'huge-headers');
      assert.ok(await dead('good.after', 'good-after', { [Headers.DEAD_REASON]: 'fine', [Headers.ATTEMPTS]: 1 }));

      const plain = await one('no-headers');
      assert.deepEqual([plain.code, plain.attempts, plain.queue, plain.exchange], ['UNKNOWN', undefined, undefined, DEAD_EXCHANGE]);
      assert.match(plain.reason, /no reason given/);
      assert.deepEqual(plain.body, Buffer.from([0xff, 0xfe, 0x00]), 'the body byte for byte');
      assert.equal(plain.firstFailedAt, plain.lastFailedAt);

      const nul = (await all()).find((l) => l.routingKey === 'nul.key') as StoredDeadLetter;
      assert.ok(nul, 'kept');
      for (const t of [nul.reason, nul.messageId, nul.queue, JSON.stringify(nul.properties)]) {
        assert.ok(!String(t).includes('\u0000'), `no NUL: ${t}`);
        assert.ok(String(t).isWellFormed());
      }
      assert.equal(nul.code, 'UNKNOWN');
      assert.equal(nul.attempts, undefined);
      assert.ok(Math.abs(nul.lastFailedAt - nul.at) < 1000, 'a time out of range: when it was read');

      const huge = await one('huge-headers');
      assert.ok(Buffer.byteLength(huge.reason) <= 1024);
      assert.ok(Buffer.byteLength(JSON.stringify(huge.properties)) <= 65_536);
      assert.ok((huge.properties.sanitized as { droppedHeaders: string[] }).droppedHeaders.length > 0, 'the note names what went');
      const good = await one('good-after');
      assert.equal(good.attempts, 1);
      assert.equal(intake.isConsuming(), true);
    });

    test('the same message twice (as a redelivery is): kept once', async () => {
      const headers = { [Headers.DEAD_REASON]: 'twice', [Headers.LAST_FAILED_AT]: Date.now() };
      assert.ok(await dead('twice.same', 'twice', headers));
      assert.ok(await dead('twice.same', 'twice', headers));
      assert.ok(await dead('twice.same', 'twice-marker', {}));
      await one('twice-marker');
      assert.equal((await byMessageId('twice')).length, 1);
    });

    test('redelivered after its row was written, before its ack (connections dropped): kept once', async () => {
      let dropped = 0;
      hooks.hooks.afterWrite = async () => {
        hooks.hooks.afterWrite = undefined;
        dropped = await vhost.dropConnections();
      };
      const skippedBefore = intake.stats().skipped;
      assert.ok(await dead('redelivered.one', 'redelivered', { [Headers.DEAD_REASON]: 'r' }));
      await waitFor('connections dropped after the write', () => dropped > 0, 15_000, 20);
      pub = await createRawPublisher(vhost.url).catch(() => pub);
      await waitFor('the intake back', () => intake.isConsuming(), 30_000, 50);
      assert.ok(await dead('redelivered.marker', 'redelivered-marker', {}));
      await one('redelivered-marker');
      assert.equal((await byMessageId('redelivered')).length, 1);
      assert.ok(intake.stats().skipped > skippedBefore, 'it came again and was skipped by its key');
      await waitFor('nothing left unacknowledged', async () => {
        const q = (await vhost.queues()).find((x) => x.name === DEAD_STORE_QUEUE);
        return q?.messages === 0;
      });
    });

    test('the store unavailable: retried, nothing lost, kept once when it is back', async () => {
      let outages = 3;
      const writesBefore = hooks.writes();
      hooks.hooks.beforeWrite = () => {
        if (outages-- > 0) throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
        hooks.hooks.beforeWrite = undefined;
      };
      assert.ok(await dead('outage.one', 'outage', { [Headers.DEAD_REASON]: 'o' }));
      await one('outage');
      assert.ok(hooks.writes() - writesBefore >= 4, 'retried');
    });

    test('eventsInLog: the ids the log holds, whatever their case; what is not a UUID is in no log', async () => {
      assert.equal(await opened.store.acquireWriterLease(), true);
      const event = createEvent({ sender: 'inlog', type: 'checked', data: {} });
      await opened.store.append([event]);
      const other = createEvent({ sender: 'inlog', type: 'checked', data: {} }).id;
      const found = await letters.eventsInLog([event.id.toUpperCase(), other, 'not-a-uuid', "x'; DROP TABLE events; --"]);
      assert.deepEqual([...found], [event.id]);
      assert.equal((await letters.eventsInLog([])).size, 0);
    });

    test('a flood of 500, in batches: every one kept once', async () => {
      const writesBefore = hooks.writes();
      const batch = Array.from({ length: 500 }, (_, i) => ({
        routingKey: 'flood.x',
        content: Buffer.from(String(i)),
        options: { messageId: `flood-${i}`, headers: { [Headers.DEAD_REASON]: 'f' }, persistent: true },
      }));
      assert.ok((await pub.publishMany(DEAD_EXCHANGE, batch, 100)).every(Boolean));
      await waitFor(
        'all 500 kept',
        async () => (await letters.list({ selector: undefined }, 0n, 1000)).filter((l) => l.routingKey === 'flood.x').length === 500,
        30_000,
        100,
      );
      const writes = hooks.writes() - writesBefore;
      assert.ok(writes < 500 / 4, `batched: ${writes} writes for 500`);
    });
  });
}

intakeSuite('PostgreSQL', async () => {
  const db: TestDatabase = await createTestDatabase('intake');
  return { store: await openStore({ url: db.url }), cleanup: () => db.drop() };
});

intakeSuite('embedded store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-intake-'));
  return { store: await openStore({ dataDir: dir }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('dead letter intake bounds (int: RabbitMQ, PostgreSQL)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let store: Store;
  let letters: DeadLetterStore;
  let intake: DeadLetterIntake;
  let pub: RawPublisher;
  const MAX = 5;

  before(async () => {
    vhost = await createTestVhost('intake-bounds');
    db = await createTestDatabase('intake_bounds');
    store = await openStore({ url: db.url });
    await store.migrate();
    letters = createDeadLetterStore(store.sql);
    // As a hub before the byte bound declared it.
    const conn = await connect(vhost.url);
    const ch = await conn.createChannel();
    await ch.assertQueue(DEAD_STORE_QUEUE, { durable: true, arguments: { 'x-single-active-consumer': true } });
    await conn.close();
    intake = createDeadLetterIntake({ amqpUrl: vhost.url, store: letters, logger: logger(), maxKept: MAX });
    intake.start();
    pub = await createRawPublisher(vhost.url);
  });
  after(async () => {
    await pub?.close();
    await intake?.stop();
    await store?.close();
    await db?.drop();
    await vhost?.delete();
  });

  test('an existing herald.dead.store declared with other arguments is used as it is', async () => {
    await waitFor('the intake consuming', () => intake.isConsuming(), 15_000);
  });

  test(`at most ${MAX} subscribers' dead letters are kept, the oldest purged first; the hub's own are not counted`, async () => {
    await store.addDeadLetters([
      {
        reason: 'r',
        code: 'INVALID_EVENT',
        exchange: 'herald.ingest',
        routingKey: 'a',
        properties: {},
        body: Buffer.from('x'),
        at: Date.now(),
      },
    ]);
    for (let i = 0; i < 8; i++)
      assert.ok(
        await pub.publish(DEAD_EXCHANGE, {
          routingKey: 'cap.x',
          content: Buffer.from(String(i)),
          options: { messageId: `cap-${i}`, headers: { [Headers.DEAD_REASON]: 'c' }, persistent: true },
        }),
      );
    let ids: (string | undefined)[] = [];
    await waitFor(
      `the newest kept, at most ${MAX}`,
      async () => {
        ids = (await letters.list({ source: 'subscriber' }, 0n, 100)).map((l) => l.messageId);
        return ids.includes('cap-7') && ids.length <= MAX;
      },
      15_000,
      50,
    );
    assert.deepEqual(ids, ['cap-3', 'cap-4', 'cap-5', 'cap-6', 'cap-7']);
    assert.equal((await letters.list({ source: 'hub' }, 0n, 100)).length, 1);
  });
});
