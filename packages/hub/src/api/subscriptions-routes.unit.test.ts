import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ErrorCodes, HeraldError, parseSelector, type Selector } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import type { Store } from '../store/index.ts';
import { assertSubscriptionName, normalizeStart } from '../subscriptions/index.ts';
import type { AttachRequest, Consumer, DeliveredEvent, SubscriptionManager, SubscriptionView } from '../subscriptions/types.ts';
import { createApi } from './index.ts';
import { subscriptionsRoutes } from './subscriptions-routes.ts';

// The routes' own logic (status codes, problem documents, JSON shapes, SSE framing, Last-Event-ID,
// standby) over an in-memory manager, through inject. The real manager is exercised by
// subscriptions-routes.int.test.ts and the e2e tests.

interface Sub {
  name: string;
  selector: Selector;
  acked: bigint;
  createdAt: number;
  consumer?: string | undefined;
}

const event = (offset: bigint, type = 'invoice.paid', replay?: string): DeliveredEvent => ({
  offset,
  id: randomUUID(),
  sender: 'billing',
  type,
  time: Date.UTC(2026, 0, 1),
  storedAt: Date.UTC(2026, 0, 1),
  contentType: 'application/json',
  data: Buffer.from(JSON.stringify({ n: Number(offset) })),
  headers: {},
  ...(replay === undefined ? {} : { replay }),
});

/** Delivers `log` after the acked offset; ends itself when it has nothing more (so inject returns). */
class FakeConsumer implements Consumer {
  readonly active: Promise<void>;
  readonly ended: Promise<string>;
  private end!: (reason: string) => void;
  private activate!: () => void;
  private next_: bigint;
  acks: bigint[] = [];
  closed = false;
  constructor(
    private readonly sub: Sub,
    private readonly log: DeliveredEvent[],
    standby: boolean,
  ) {
    this.active = new Promise((resolve) => {
      this.activate = resolve;
    });
    this.ended = new Promise((resolve) => {
      this.end = resolve;
    });
    this.next_ = sub.acked;
    if (!standby) this.activate();
  }
  get name() {
    return this.sub.name;
  }
  takeOver() {
    this.activate();
  }
  async next(max: number): Promise<DeliveredEvent[]> {
    const out = this.log.filter((e) => e.replay !== undefined || e.offset > this.next_).slice(0, max);
    const live = out.filter((e) => e.replay === undefined);
    if (live.length > 0) this.next_ = (live[live.length - 1] as DeliveredEvent).offset;
    this.log.splice(0, this.log.length, ...this.log.filter((e) => e.replay === undefined));
    if (out.length === 0) {
      setImmediate(() => this.end('no more (test)'));
      await new Promise((r) => setTimeout(r, 50));
    }
    return out;
  }
  ack(offset: bigint) {
    if (offset > this.next_) throw new HeraldError(ErrorCodes.INVALID_REQUEST, 'ack above what was delivered');
    this.acks.push(offset);
    if (offset > this.sub.acked) this.sub.acked = offset;
  }
  async close() {
    this.closed = true;
    this.sub.consumer = undefined;
  }
}

class FakeManager implements SubscriptionManager {
  subs = new Map<string, Sub>();
  log: DeliveredEvent[] = [];
  consumers: FakeConsumer[] = [];
  standby = false;
  lastPull: { max: number; waitMs: number } | undefined;
  head = () => this.log.reduce((h, e) => (e.replay === undefined && e.offset > h ? e.offset : h), 0n);
  view(s: Sub): SubscriptionView {
    const lag = this.log.filter((e) => e.offset > s.acked).length;
    return {
      name: s.name,
      selector: s.selector,
      state: s.consumer ? 'active' : 'sleeping',
      ackedOffset: s.acked,
      headOffset: this.head(),
      lagEvents: lag,
      lagSeconds: lag > 0 ? 12.5 : 0,
      consumer: s.consumer,
      queue: `herald.sub.${s.selector.canonical.length}`,
      createdAt: s.createdAt,
    };
  }
  async start() {}
  async stop() {}
  async create(input: { name: string; selector: unknown; start?: unknown }) {
    assertSubscriptionName(input.name);
    normalizeStart(input.start);
    const selector = parseSelector(input.selector as string);
    const old = this.subs.get(input.name);
    if (old) {
      if (old.selector.canonical !== selector.canonical)
        throw new HeraldError(ErrorCodes.CONFLICT, `subscription ${input.name} exists with selector ${old.selector.canonical}`);
      return this.view(old);
    }
    const s: Sub = { name: input.name, selector, acked: input.start === 'earliest' ? 0n : this.head(), createdAt: Date.now() };
    this.subs.set(s.name, s);
    return this.view(s);
  }
  async list() {
    return [...this.subs.values()].map((s) => this.view(s));
  }
  async get(name: string) {
    const s = this.subs.get(name);
    return s && this.view(s);
  }
  async delete(name: string) {
    return this.subs.delete(name);
  }
  async attach(req: AttachRequest) {
    const s = this.subs.get(req.name);
    if (!s) throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${req.name}`);
    s.consumer = req.consumer;
    const c = new FakeConsumer(s, this.log, this.standby);
    this.consumers.push(c);
    return c;
  }
  async pull(name: string, opts: { max: number; waitMs: number; signal?: AbortSignal }) {
    const s = this.subs.get(name);
    if (!s) throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${name}`);
    this.lastPull = { max: opts.max, waitMs: opts.waitMs };
    return this.log.filter((e) => e.offset > s.acked).slice(0, opts.max);
  }
  async ack(name: string, offset: bigint) {
    const s = this.subs.get(name);
    if (!s) throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${name}`);
    if (offset > this.head()) throw new HeraldError(ErrorCodes.INVALID_REQUEST, `offset ${offset} is above the head`);
    if (offset > s.acked) s.acked = offset;
  }
  async replay() {
    return 0;
  }
}

describe('subscription routes over an in-memory manager', () => {
  const m = new FakeManager();
  let manager: SubscriptionManager | undefined = m;
  let mode = 'router';
  let app: FastifyInstance;
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown, headers?: Record<string, string>) => {
    const res = await app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });
    return {
      status: res.statusCode,
      type: String(res.headers['content-type']),
      text: res.body,
      body: res.body && /json/.test(String(res.headers['content-type'])) ? res.json() : undefined,
    };
  };

  before(async () => {
    app = await createApi({
      store: {} as Store,
      ready: () => true,
      publish: async () => {},
      extraRoutes: (a) =>
        subscriptionsRoutes(a, {
          manager: () => manager,
          get mode() {
            return mode;
          },
        }),
    });
    await app.ready();
  });
  after(async () => {
    await app?.close();
  });

  test('create answers 201, then 200 for the same, 409 for another selector; get, list and delete', async () => {
    for (let i = 1n; i <= 3n; i++) m.log.push(event(i));
    const created = await call('POST', '/api/v1/subscriptions', { name: 'ledger', selector: 'billing:*', start: 'earliest' });
    assert.equal(created.status, 201);
    assert.deepEqual(created.body, {
      name: 'ledger',
      selector: ['billing:*'],
      state: 'sleeping',
      ackedOffset: '0',
      headOffset: '3',
      lagEvents: 3,
      lagSeconds: 12.5,
      consumer: null,
      queue: created.body.queue,
      createdAt: created.body.createdAt,
    });
    assert.ok(Number.isFinite(Date.parse(created.body.createdAt)));
    assert.equal((await call('POST', '/api/v1/subscriptions', { name: 'ledger', selector: ['billing:*'] })).status, 200);
    const conflict = await call('POST', '/api/v1/subscriptions', { name: 'ledger', selector: 'shop:*' });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.code, 'CONFLICT');
    assert.equal((await call('GET', '/api/v1/subscriptions/ledger')).body.name, 'ledger');
    assert.deepEqual(
      (await call('GET', '/api/v1/subscriptions')).body.items.map((s: { name: string }) => s.name),
      ['ledger'],
    );
    assert.equal((await call('GET', '/api/v1/subscriptions/nope')).status, 404);
    await call('POST', '/api/v1/subscriptions', { name: 'gone', selector: 'billing:*' });
    const del = await call('DELETE', '/api/v1/subscriptions/gone');
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    assert.equal((await call('DELETE', '/api/v1/subscriptions/gone')).status, 404);
  });

  test('bad requests are 400 problem documents naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ selector: 'billing:*' }, 'name'],
      [{ name: 'a b', selector: 'billing:*' }, 'name'],
      [{ name: 'x', selector: 'billing' }, 'selector'],
      [{ name: 'x', selector: 'billing:*', colour: 'red' }, 'colour'],
      [{ name: 'x', selector: 'billing:*', start: 'tomorrow' }, 'start'],
      [{ name: 'x', selector: 'billing:*', start: { time: 'yesterday' } }, 'start.time'],
    ];
    for (const [body, parameter] of cases) {
      const r = await call('POST', '/api/v1/subscriptions', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.type, /application\/problem\+json/);
      assert.equal(r.body.parameter?.split('.')[0], parameter.split('.')[0], `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    }
    const max = await call('GET', '/api/v1/subscriptions/ledger/events?max=5000');
    assert.equal(max.status, 400);
    assert.equal(max.body.parameter, 'max');
    const wait = await call('GET', '/api/v1/subscriptions/ledger/events?wait=31');
    assert.equal(wait.body.parameter, 'wait');
    const ack = await call('POST', '/api/v1/subscriptions/ledger/ack', { offset: 'x' });
    assert.equal(ack.status, 400);
    assert.equal(ack.body.parameter, 'offset');
    const high = await call('POST', '/api/v1/subscriptions/ledger/ack', { offset: '99' });
    assert.equal(high.status, 400);
    assert.equal(high.body.parameter, 'offset');
    const lastId = await call('GET', '/api/v1/subscriptions/ledger/stream', undefined, { 'last-event-id': '99' });
    assert.equal(lastId.status, 400);
    assert.equal(lastId.body.parameter, 'Last-Event-ID');
    assert.equal((await call('GET', '/api/v1/subscriptions/nope/stream')).status, 404);
    assert.equal((await call('GET', '/api/v1/subscriptions/nope/events?wait=0')).status, 404);
  });

  test('pull renders events like /api/v1/events (offsets as strings, replay marked); ack is 204', async () => {
    m.log.push(event(4n, 'invoice.void', 'r-1'));
    const r = await call('GET', '/api/v1/subscriptions/ledger/events?max=10&wait=0.5');
    assert.equal(r.status, 200);
    assert.deepEqual(m.lastPull, { max: 10, waitMs: 500 });
    assert.deepEqual(
      r.body.events.map((e: { offset: string; replay?: string }) => [e.offset, e.replay]),
      [
        ['1', undefined],
        ['2', undefined],
        ['3', undefined],
        ['4', 'r-1'],
      ],
    );
    assert.deepEqual(r.body.events[0].data, { n: 1 });
    m.log.pop();
    assert.equal((await call('POST', '/api/v1/subscriptions/ledger/ack', { offset: 2 })).status, 204);
    assert.equal((await call('GET', '/api/v1/subscriptions/ledger')).body.ackedOffset, '2');
    await call('GET', '/api/v1/subscriptions/ledger/events');
    assert.deepEqual(m.lastPull, { max: 100, waitMs: 5000 }, 'defaults: max 100, wait 5 s');
  });

  test('SSE: id/event/data frames in order, auto-ack, Last-Event-ID skips and acks, replays carry no id', async () => {
    for (let i = 5n; i <= 6n; i++) m.log.push(event(i));
    m.log.push(event(1n, 'invoice.paid', 'r-2'));
    const r = await call('GET', '/api/v1/subscriptions/ledger/stream', undefined, { 'last-event-id': '3' });
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/event-stream/);
    const c = m.consumers.at(-1) as FakeConsumer;
    assert.ok(c.closed, 'the consumer is closed when the stream ends');
    const frames = r.text.split('\n\n').filter(Boolean);
    assert.deepEqual(
      frames.filter((f) => !f.startsWith(':')).map((f) => f.split('\n').filter((l) => !l.startsWith('data:'))),
      [['id: 5', 'event: invoice.paid'], ['id: 6', 'event: invoice.paid'], ['event: invoice.paid']],
    );
    const data = JSON.parse(
      (frames.find((f) => f.startsWith('id: 5')) as string)
        .split('\n')
        .find((l) => l.startsWith('data: '))
        ?.slice(6) as string,
    );
    assert.equal(data.offset, '5');
    assert.match(frames.at(-1) as string, /^: ended: no more/);
    assert.equal(m.subs.get('ledger')?.acked, 6n, 'written events are acknowledged');
    assert.deepEqual(c.acks, [6n], 'one ack per written batch; offset 3 (up to Last-Event-ID) acknowledged, not sent');
    assert.match(c.name, /ledger/);
  });

  test('a standby stream says so first', async () => {
    m.standby = true;
    try {
      const pending = call('GET', '/api/v1/subscriptions/ledger/stream');
      await new Promise((r) => setTimeout(r, 300));
      (m.consumers.at(-1) as FakeConsumer).takeOver();
      const r = await pending;
      assert.match(r.text, /^: waiting as standby\n\n: active\n\n/);
    } finally {
      m.standby = false;
    }
  });

  test('archive mode answers 409, no manager 503; the OpenAPI document lists the routes', async () => {
    manager = undefined;
    try {
      assert.equal((await call('GET', '/api/v1/subscriptions')).status, 503);
      mode = 'archive';
      const r = await call('GET', '/api/v1/subscriptions/ledger');
      assert.equal(r.status, 409);
      assert.match(r.body.detail, /router mode/);
    } finally {
      manager = m;
      mode = 'router';
    }
    const doc = (await call('GET', '/openapi.json')).body as { paths: Record<string, Record<string, Record<string, unknown>>> };
    assert.ok(doc.paths['/api/v1/subscriptions']?.post);
    assert.ok(doc.paths['/api/v1/subscriptions']?.get);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}']?.get);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}']?.delete);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}/events']?.get);
    assert.ok(doc.paths['/api/v1/subscriptions/{name}/ack']?.post);
    const stream = doc.paths['/api/v1/subscriptions/{name}/stream']?.get as {
      responses: Record<string, { content: Record<string, unknown> }>;
      parameters: { name: string; in: string }[];
    };
    assert.ok(stream.responses['200']?.content['text/event-stream']);
    assert.ok(stream.parameters.some((p) => p.in === 'header' && p.name === 'last-event-id'));
  });
});
