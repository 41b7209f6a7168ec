import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  createEvent,
  DEAD_QUEUE,
  ErrorCodes,
  EVENTS_EXCHANGE,
  Headers,
  HeraldError,
  type HeraldEvent,
  INGEST_EXCHANGE,
} from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  publishWithHugeHeaders,
  type RawMessage,
  type RawPublisher,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import { type Channel, type ChannelModel, type ConsumeMessage, connect, type Message } from 'amqplib';
import { pino } from 'pino';
import { normalizeConfig } from '../config/index.ts';
import { DISPATCHED_KEY } from '../dispatcher/index.ts';
import { EventPath } from '../event-path.ts';
import { createHub, type Hub } from '../hub.ts';
import { openStore } from '../store/index.ts';
import type { DeadLetter, Store } from '../store/types.ts';
import { HEADERS_DROPPED_HEADER } from './amqp-table.ts';
import type { Ingest } from './ingest.ts';

const logger = () => pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' });
/** How soon a good event published after a bad one must be stored and forwarded. */
const FLOW_MS = 5000;

/** A queue bound to herald.events that records what the hub forwards. */
async function listenToEvents(url: string): Promise<{ seen: ConsumeMessage[]; close(): Promise<void> }> {
  const conn = await connect(url);
  const ch = await conn.createChannel();
  await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, EVENTS_EXCHANGE, '#');
  const seen: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => m && seen.push(m), { noAck: true });
  return { seen, close: () => conn.close().catch(() => undefined) };
}

/** The messages on queue herald.dead, read (and removed) until one with `messageId` shows up. */
async function findOnDeadQueue(ch: Channel, messageId: string): Promise<Message> {
  let found: Message | undefined;
  await waitFor(`dead letter ${messageId} on ${DEAD_QUEUE}`, async () => {
    for (;;) {
      const m = await ch.get(DEAD_QUEUE, { noAck: true });
      if (m === false) return false;
      if (m.properties.messageId === messageId || m.properties.headers?.[Headers.DEAD_REASON]?.toString().includes(messageId)) {
        found = m;
        return true;
      }
    }
  });
  return found as Message;
}

async function findDeadLetter(store: Store, messageId: string): Promise<DeadLetter> {
  let found: DeadLetter | undefined;
  await waitFor(`dead letter ${messageId} stored`, async () => {
    found = (await store.listDeadLetters(1000)).find((l) => l.messageId === messageId);
    return found !== undefined;
  });
  return found as DeadLetter;
}

function goodEvent(): RawMessage {
  return {
    routingKey: 'billing.invoice.paid',
    content: Buffer.from('{"ok":true}'),
    options: { messageId: randomUUID(), contentType: 'application/json' },
  };
}

/** Publishes a good event and asserts that it is stored and forwarded within FLOW_MS. */
async function assertFlows(pub: RawPublisher, reader: Store, seen: ConsumeMessage[]): Promise<void> {
  const good = goodEvent();
  const id = String(good.options?.messageId);
  const started = Date.now();
  assert.ok(await pub.publish(INGEST_EXCHANGE, good));
  await waitFor(
    'the good event published after it forwarded to herald.events',
    () => seen.some((m) => m.properties.messageId === id),
    FLOW_MS,
    50,
  );
  assert.ok(await reader.getById(id), 'and stored');
  assert.ok(Date.now() - started <= FLOW_MS + 500);
}

describe('poison messages at AMQP ingest never stop the flow (router mode, PostgreSQL)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: Hub;
  let reader: Store;
  let pub: RawPublisher;
  let events: Awaited<ReturnType<typeof listenToEvents>>;
  let conn: ChannelModel;
  let ch: Channel;

  before(async () => {
    vhost = await createTestVhost('poison');
    db = await createTestDatabase('poison');
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode: 'router', httpPort: 0, grpcPort: 0 }, {});
    hub = createHub(config, { logger: logger() });
    await hub.start();
    reader = await openStore({ url: db.url });
    pub = await createRawPublisher(vhost.url);
    events = await listenToEvents(vhost.url);
    conn = await connect(vhost.url);
    ch = await conn.createChannel();
  });

  after(async () => {
    await conn?.close().catch(() => undefined);
    await events?.close();
    await pub?.close();
    await hub?.stop();
    await reader?.close();
    await vhost?.delete();
    await db?.drop();
  });

  for (const [what, header] of [
    ['a header value', 'note'],
    ['the subject header', Headers.SUBJECT],
  ] as const) {
    test(`a NUL in ${what}: a dead letter with its reason (row and ${DEAD_QUEUE}), and the flow goes on`, async () => {
      const id = randomUUID();
      assert.ok(
        await pub.publish(INGEST_EXCHANGE, {
          routingKey: 'billing.invoice.paid',
          content: Buffer.from('{"bad":true}'),
          options: { messageId: id, headers: { [header]: 'a\u0000b' } },
        }),
      );
      await assertFlows(pub, reader, events.seen);
      const letter = await findDeadLetter(reader, id);
      assert.match(letter.reason, /NUL/);
      assert.equal(letter.code, ErrorCodes.INVALID_EVENT);
      assert.deepEqual(letter.body, Buffer.from('{"bad":true}'));
      const headers = letter.properties.headers as Record<string, unknown>;
      assert.equal(headers[header], 'a\ufffdb', 'the sanitized copy');
      const dead = await findOnDeadQueue(ch, id);
      assert.match(String(dead.properties.headers?.[Headers.DEAD_REASON]), /NUL/);
      assert.equal(dead.properties.headers?.[header], 'a\u0000b', 'the original headers travel on herald.dead');
      assert.equal(dead.content.toString(), '{"bad":true}');
      assert.ok(!events.seen.some((m) => m.properties.messageId === id), 'never forwarded');
    });
  }

  test('a 30 KB header value of random binary bytes: dead-lettered (not UTF-8 text), no loop, the flow goes on', async () => {
    const id = randomUUID();
    const bin = randomBytes(30_000);
    bin[0] = 0; // a NUL, once read as text, as well as invalid UTF-8
    bin[1] = 0xff;
    assert.ok(
      await pub.publish(INGEST_EXCHANGE, {
        routingKey: 'billing.invoice.paid',
        content: Buffer.from('{}'),
        options: { messageId: id, headers: { bin } },
      }),
    );
    await assertFlows(pub, reader, events.seen);
    const letter = await findDeadLetter(reader, id);
    assert.match(letter.reason, /UTF-8/);
    const kept = (letter.properties.headers as Record<string, unknown>).bin as { $base64: string; bytes: number };
    assert.equal(kept.bytes, 30_000, 'shown as base64 with its length, not as lossy text');
    assert.ok(bin.subarray(0, 100).equals(Buffer.from(kept.$base64, 'base64').subarray(0, 100)));
    const dead = await findOnDeadQueue(ch, id);
    assert.ok(
      Buffer.isBuffer(dead.properties.headers?.bin) && (dead.properties.headers?.bin as Buffer).equals(bin),
      'bytes intact on herald.dead',
    );
  });

  test('100 KB of headers (more than amqplib can publish again): dead-lettered, published without them, the flow goes on', async () => {
    const id = randomUUID();
    const headers: Record<string, string> = {};
    for (let i = 0; i < 10; i++) headers[`h${i}`] = `${i}`.repeat(10_000);
    await publishWithHugeHeaders(vhost.url, INGEST_EXCHANGE, 'billing.invoice.paid', headers, id);
    await assertFlows(pub, reader, events.seen);
    const letter = await findDeadLetter(reader, id);
    assert.match(letter.reason, /header/);
    assert.ok(Buffer.byteLength(JSON.stringify(letter.properties)) <= 65_536);
    const note = letter.properties.sanitized as { droppedHeaders: string[] };
    assert.ok(note.droppedHeaders.length > 0, 'the row says which headers it dropped');
    const dead = await findOnDeadQueue(ch, id);
    assert.equal(String(dead.properties.headers?.[HEADERS_DROPPED_HEADER]), 'true');
    assert.equal(dead.properties.headers?.h0, undefined);
    assert.match(String(dead.properties.headers?.[Headers.DEAD_REASON]), /header/);
    assert.equal(hub.state(), 'running');
  });
});

describe('a stored event that cannot be forwarded as it is goes without its headers, once (router start, PostgreSQL)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: Hub | undefined;
  let reader: Store;
  let pub: RawPublisher;
  let events: Awaited<ReturnType<typeof listenToEvents>>;
  const seeded: HeraldEvent[] = [];

  before(async () => {
    vhost = await createTestVhost('unforwardable');
    db = await createTestDatabase('unforwardable');
    // A log written before the limits were checked at ingest: the store itself takes these.
    const seed = await openStore({ url: db.url });
    await seed.migrate();
    assert.ok(await seed.acquireWriterLease());
    const base = createEvent({ sender: 'billing', type: 'invoice.paid', data: { n: 0 } });
    seeded.push(
      base,
      { ...createEvent({ sender: 'billing', type: 'invoice.paid', data: { n: 1 } }), headers: { big: 'x'.repeat(70_000) } },
      { ...createEvent({ sender: 'billing', type: 'invoice.paid', data: { n: 2 } }), headers: { ['n'.repeat(300)]: 'v' } },
      {
        ...createEvent({ sender: 'billing', type: 'invoice.paid', data: { n: 3 } }),
        headers: { bin: '\ufffd'.repeat(30_000) },
        subject: 's',
      },
    );
    await seed.append(seeded);
    await seed.setState(DISPATCHED_KEY, { offset: '0' }); // none forwarded yet
    await seed.close();
    events = await listenToEvents(vhost.url);
    reader = await openStore({ url: db.url });
    pub = await createRawPublisher(vhost.url);
  });

  after(async () => {
    await events?.close();
    await pub?.close();
    await hub?.stop();
    await reader?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('forwarded with x-herald-headers-dropped, whole in the log; the hub runs and later events flow', async () => {
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode: 'router', httpPort: 0, grpcPort: 0 }, {});
    hub = createHub(config, { logger: logger() });
    await hub.start();
    await waitFor(
      'the seeded events forwarded',
      () => seeded.every((e) => events.seen.some((m) => m.properties.messageId === e.id)),
      15_000,
    );
    assert.equal(hub.state(), 'running');
    for (const [i, e] of seeded.entries()) {
      const forwards = events.seen.filter((m) => m.properties.messageId === e.id);
      const h = forwards[0]?.properties.headers ?? {};
      assert.equal(String(h[Headers.OFFSET]), String(i + 1));
      if (i === 0) {
        assert.equal(h[HEADERS_DROPPED_HEADER], undefined);
        continue;
      }
      assert.equal(String(h[HEADERS_DROPPED_HEADER]), 'true', `event ${i}: marked`);
      for (const name of Object.keys(e.headers)) assert.equal(h[name], undefined, `event ${i}: without its headers`);
      const stored = await reader.getById(e.id);
      assert.deepEqual(stored?.headers, e.headers, `event ${i}: whole in the log`);
    }
    assert.equal(String(events.seen.find((m) => m.properties.messageId === seeded[3]?.id)?.properties.headers?.[Headers.SUBJECT]), 's');
    await assertFlows(pub, reader, events.seen);
    for (const e of seeded) assert.equal(events.seen.filter((m) => m.properties.messageId === e.id).length, 1, 'forwarded once, no loop');
  });
});

/**
 * The real PostgreSQL store, refusing what the test marks: an append holding an event with header
 * `refuse` fails with that SQLSTATE (as PostgreSQL refuses bad data), an addDeadLetters holding a
 * letter whose headers have `refuse-letter` fails with 22P05, and the first `outages` appends fail
 * as an unavailable store does.
 */
function faultyStore(real: Store, outages: unknown[]): Store & { appends: number } {
  const faulty = Object.create(real) as Store & { appends: number };
  faulty.appends = 0;
  faulty.append = async (batch) => {
    faulty.appends++;
    const outage = outages.shift();
    if (outage !== undefined) throw outage;
    const bad = batch.find((e) => e.headers.refuse !== undefined);
    if (bad) throw Object.assign(new Error(`refused by the test (${bad.headers.refuse})`), { code: bad.headers.refuse });
    return real.append(batch);
  };
  faulty.addDeadLetters = async (letters) => {
    if (letters.some((l) => (l.properties.headers as Record<string, unknown> | undefined)?.['refuse-letter'] !== undefined))
      throw Object.assign(new Error('unsupported Unicode escape sequence'), { code: '22P05' });
    return real.addDeadLetters(letters);
  };
  return faulty;
}

describe('what the store says decides: retry the batch, or dead-letter the events it refuses and store the rest', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let real: Store;
  let store: ReturnType<typeof faultyStore>;
  let ingest: Ingest;
  let path: EventPath;
  let pub: RawPublisher;
  let events: Awaited<ReturnType<typeof listenToEvents>>;
  let conn: ChannelModel;
  let ch: Channel;
  const outages: unknown[] = [];

  before(async () => {
    vhost = await createTestVhost('refusals');
    db = await createTestDatabase('refusals');
    real = await openStore({ url: db.url });
    await real.migrate();
    assert.ok(await real.acquireWriterLease());
    store = faultyStore(real, outages);
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode: 'router', httpPort: 0, grpcPort: 0 }, {});
    path = new EventPath({ config, store, logger: logger() });
    ingest = path.ingest;
    events = await listenToEvents(vhost.url);
    await path.start();
    pub = await createRawPublisher(vhost.url);
    conn = await connect(vhost.url);
    ch = await conn.createChannel();
  });

  after(async () => {
    await conn?.close().catch(() => undefined);
    await events?.close();
    await pub?.close();
    await path?.stop();
    await real?.close();
    await vhost?.delete();
    await db?.drop();
  });

  const message = (headers: Record<string, string> = {}): RawMessage => ({ ...goodEvent(), options: { ...goodEvent().options, headers } });
  const idOf = (m: RawMessage) => String(m.options?.messageId);

  test('refused data (54000, 23502, 22021) in a batch: those events are dead letters made from the event, the rest stored and forwarded', async () => {
    const batch = [
      ...Array.from({ length: 30 }, () => message()),
      message({ refuse: '54000' }),
      ...Array.from({ length: 30 }, () => message()),
      message({ refuse: '23502' }),
      message({ refuse: '22021' }),
      ...Array.from({ length: 5 }, () => message()),
    ];
    assert.ok((await pub.publishMany(INGEST_EXCHANGE, batch, 100)).every(Boolean));
    const good = batch.filter((m) => !m.options?.headers?.refuse);
    const bad = batch.filter((m) => m.options?.headers?.refuse);
    await waitFor(
      'the good events forwarded',
      () => good.every((m) => events.seen.some((s) => s.properties.messageId === idOf(m))),
      15_000,
    );
    for (const m of bad) {
      const letter = await findDeadLetter(real, idOf(m));
      assert.match(letter.reason, new RegExp(`the store refused the event: .*${m.options?.headers?.refuse}`));
      assert.equal(letter.routingKey, 'billing.invoice.paid');
      assert.equal((letter.properties.headers as Record<string, unknown>).refuse, m.options?.headers?.refuse, 'made from the event');
      assert.equal(letter.properties.appId, 'billing');
      const dead = await findOnDeadQueue(ch, idOf(m));
      assert.match(String(dead.properties.headers?.[Headers.DEAD_REASON]), /the store refused the event/);
      assert.ok(!events.seen.some((s) => s.properties.messageId === idOf(m)));
    }
    for (const m of good) assert.ok(await real.getById(idOf(m)));
    assert.equal(ingest.stats().dead, bad.length);
  });

  test('a dead letter the store refuses even sanitized: logged, on herald.dead with that reason, and the flow goes on', async () => {
    const poisoned = message({ refuse: '22021', 'refuse-letter': 'yes' });
    assert.ok(await pub.publish(INGEST_EXCHANGE, poisoned));
    await assertFlows(pub, real, events.seen);
    const dead = await findOnDeadQueue(ch, idOf(poisoned));
    assert.match(String(dead.properties.headers?.[Headers.DEAD_REASON]), /not kept in dead_letters: unsupported Unicode escape sequence/);
    assert.equal(
      (await real.listDeadLetters(1000)).find((l) => l.messageId === idOf(poisoned)),
      undefined,
    );
  });

  test('an unavailable store (57P01, a lost lease, a reset connection, 08006, 53300): retried, nothing dead-lettered', async () => {
    const deadBefore = ingest.stats().dead;
    const appendsBefore = store.appends;
    outages.push(
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      new HeraldError(ErrorCodes.CONFLICT, 'cannot append: this process does not hold the writer lease'),
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      Object.assign(new Error('connection failure'), { code: '08006' }),
      Object.assign(new Error('too many connections'), { code: '53300' }),
    );
    const batch = Array.from({ length: 20 }, () => message());
    assert.ok((await pub.publishMany(INGEST_EXCHANGE, batch, 100)).every(Boolean));
    await waitFor(
      'stored after the outage',
      async () => (await Promise.all(batch.map((m) => real.getById(idOf(m))))).every(Boolean),
      30_000,
    );
    assert.ok(store.appends - appendsBefore >= 6, 'the failing appends were retried');
    assert.equal(outages.length, 0);
    assert.equal(ingest.stats().dead, deadBefore, 'nothing dead-lettered');
    await waitFor('and forwarded', () => batch.every((m) => events.seen.some((s) => s.properties.messageId === idOf(m))));
  });
});
