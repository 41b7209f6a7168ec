// The gRPC server and the SDK's subscription client against an in-memory SubscriptionManager that
// keeps the contract of ../subscriptions/types.ts (no RabbitMQ, no database): the stream protocol,
// flow control, acks, reconnects and statuses. The real manager is covered by grpc.e2e.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type SubscriptionEvent, subscription } from '@herald/client';
import {
  compileMatcher,
  createEvent,
  ErrorCodes,
  GRPC_ERROR_CODE_KEY,
  HeraldError,
  type HeraldEvent,
  PROTO_LOADER_OPTIONS,
  PROTO_PATH,
  parseSelector,
} from '@herald/core';
import { freePort, waitFor } from '@herald/testing';
import { pino } from 'pino';
import type { AttachRequest, Consumer, DeliveredEvent, SubscriptionManager } from '../subscriptions/types.ts';
import { createGrpcServer, type GrpcServer } from './server.ts';

interface FakeSub {
  selector: string;
  acked: bigint;
  active: FakeConsumer | undefined;
  waiting: FakeConsumer[];
}

/** The manager's contract in memory: one log, subscriptions with acked offsets, one active consumer each. */
class FakeManager implements Partial<SubscriptionManager> {
  readonly log: DeliveredEvent[] = [];
  readonly subs = new Map<string, FakeSub>();
  /** The most events delivered and not acked at any moment, per subscription. */
  readonly peakInFlight = new Map<string, number>();
  wake = new Set<() => void>();

  append(events: HeraldEvent[]): void {
    for (const e of events) this.log.push({ ...e, offset: BigInt(this.log.length + 1), storedAt: Date.now() });
    for (const w of this.wake) w();
  }

  async attach(req: AttachRequest): Promise<Consumer> {
    const selector = parseSelector(req.selector ?? '*:*').canonical;
    let sub = this.subs.get(req.name);
    if (!sub) {
      const s = req.start as { offset?: bigint } | string | undefined;
      const start =
        s === 'earliest' ? 0n : typeof s === 'object' && s.offset !== undefined ? BigInt(s.offset) - 1n : BigInt(this.log.length);
      sub = { selector, acked: start, active: undefined, waiting: [] };
      this.subs.set(req.name, sub);
    } else if (req.selector !== undefined && sub.selector !== selector) {
      throw new HeraldError(ErrorCodes.CONFLICT, `subscription ${req.name} exists with selector ${sub.selector}`);
    }
    const c = new FakeConsumer(this, req.name, sub, req.maxInFlight ?? 100);
    if (!sub.active) c.activate();
    else sub.waiting.push(c);
    return c;
  }

  async get(name: string) {
    const sub = this.subs.get(name);
    return sub ? ({ name, ackedOffset: sub.acked } as never) : undefined;
  }
}

class FakeConsumer implements Consumer {
  readonly active: Promise<void>;
  readonly ended: Promise<string>;
  private activate_!: () => void;
  private reject_!: (e: Error) => void;
  endWith!: (reason: string) => void;
  delivered: bigint;
  /** Matching offsets delivered and not acked. */
  inFlight: bigint[] = [];
  closed = false;
  private readonly match: (sender: string, type: string) => boolean;

  constructor(
    private readonly m: FakeManager,
    readonly name: string,
    private readonly sub: FakeSub,
    private readonly maxInFlight: number,
  ) {
    this.active = new Promise((resolve, reject) => {
      this.activate_ = resolve;
      this.reject_ = reject;
    });
    this.active.catch(() => undefined);
    this.ended = new Promise((r) => {
      this.endWith = r;
    });
    this.delivered = sub.acked;
    this.match = compileMatcher(sub.selector);
  }

  activate(): void {
    this.sub.active = this;
    this.delivered = this.sub.acked;
    this.activate_();
  }

  async next(max: number, signal?: AbortSignal): Promise<DeliveredEvent[]> {
    for (;;) {
      if (signal?.aborted || this.closed) return [];
      this.inFlight = this.inFlight.filter((o) => o > this.sub.acked);
      const room = Math.min(max, this.maxInFlight - this.inFlight.length);
      const out: DeliveredEvent[] = [];
      if (room > 0) {
        for (let i = Number(this.delivered); i < this.m.log.length && out.length < room; i++) {
          const e = this.m.log[i] as DeliveredEvent;
          this.delivered = e.offset;
          if (this.match(e.sender, e.type)) {
            out.push(e);
            this.inFlight.push(e.offset);
          }
        }
      }
      if (out.length > 0) {
        this.m.peakInFlight.set(this.name, Math.max(this.m.peakInFlight.get(this.name) ?? 0, this.inFlight.length));
        return out;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          this.m.wake.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.m.wake.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  ack(offset: bigint): void {
    if (offset > this.delivered) throw new HeraldError(ErrorCodes.INVALID_REQUEST, `ack ${offset} above delivered ${this.delivered}`);
    if (offset > this.sub.acked) this.sub.acked = offset;
    for (const w of this.m.wake) w();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.m.wake) w();
    if (this.sub.active === this) {
      this.sub.active = undefined;
      this.sub.waiting.shift()?.activate();
    } else {
      this.sub.waiting = this.sub.waiting.filter((c) => c !== this);
      this.reject_(new HeraldError(ErrorCodes.CLOSED, 'closed'));
    }
  }
}

function events(n: number, types = ['a', 'b']): HeraldEvent[] {
  return Array.from({ length: n }, (_, i) => createEvent({ sender: 'svc', type: types[i % types.length] as string, data: { i } }));
}

describe('gRPC server with the SDK subscription client', () => {
  let port: number;
  let manager: FakeManager | undefined;
  let server: GrpcServer;
  const published: HeraldEvent[] = [];
  const logger = pino({ level: process.env.HERALD_TEST_LOG ?? 'silent' });

  const start = async () => {
    server = createGrpcServer({
      host: '127.0.0.1',
      port,
      manager: () => manager as never,
      publish: async (e) => void published.push(e),
      logger,
    });
    await server.start();
  };

  before(async () => {
    port = await freePort();
    manager = new FakeManager();
    await start();
  });
  after(async () => {
    await server.stop();
  });

  test('Publish validates with createEvent and publishes; bad input is INVALID_ARGUMENT with the Herald code', async () => {
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const Herald = grpc.loadPackageDefinition(def).herald as never as { v1: { Herald: grpc.ServiceClientConstructor } };
    const client = new Herald.v1.Herald(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    type Callback = (err: grpc.ServiceError | null, res?: { id: string }) => void;
    const rpc = client as unknown as { publish: (req: object, cb: Callback) => void };
    const call = (req: object) =>
      new Promise<{ id: string }>((resolve, reject) =>
        rpc.publish.call(client, req, (err, res) => (err ? reject(err) : resolve(res as { id: string }))),
      );
    try {
      const r = await call({
        sender: 'billing',
        type: 'invoice.paid',
        data: Buffer.from('{"n":1}'),
        contentType: 'application/json',
        timeMs: '1700000000000',
        headers: { k: 'v' },
      });
      const e = published.at(-1) as HeraldEvent;
      assert.equal(r.id, e.id);
      assert.equal(e.time, 1700000000000);
      assert.equal(e.contentType, 'application/json');
      assert.deepEqual(e.headers, { k: 'v' });
      assert.equal(e.data.toString(), '{"n":1}');
      await assert.rejects(call({ sender: 'bad sender!', type: 'x' }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.deepEqual(err.metadata.get(GRPC_ERROR_CODE_KEY), ['INVALID_SENDER']);
        assert.match(err.details, /sender/);
        return true;
      });
    } finally {
      client.close();
    }
  });

  test('events flow in order, at most max in flight unacked, acks reach the consumer', async () => {
    const m = manager as FakeManager;
    m.append(events(1000));
    const sub = subscription('flow', 'svc:a', { url: `127.0.0.1:${port}`, start: 'earliest', maxInFlight: 10 });
    const got: bigint[] = [];
    for await (const e of sub) {
      got.push(e.offset);
      e.ack();
      if (got.length === 500) break;
    }
    assert.equal(got.length, 500);
    assert.deepEqual(
      got,
      m.log
        .filter((e) => e.type === 'a')
        .slice(0, 500)
        .map((e) => e.offset),
    );
    assert.ok((m.peakInFlight.get('flow') ?? 0) <= 10, `peak in flight ${m.peakInFlight.get('flow')}`);
    // The last ack was sent before the stream closed.
    assert.equal(m.subs.get('flow')?.acked, got.at(-1));
    assert.equal(m.subs.get('flow')?.active, undefined, 'the consumer detached');
  });

  test('a consumer that breaks off at random points and comes back gets every offset once, in order', async () => {
    const m = manager as FakeManager;
    const before = m.log.length;
    const total = 20_000;
    const producing = (async () => {
      for (let i = 0; i < total / 500; i++) {
        m.append(events(500, ['x', 'y', 'z']));
        await sleep(5);
      }
    })();
    const expected = () =>
      m.log
        .slice(before)
        .filter((e) => e.type === 'x' || e.type === 'y')
        .map((e) => e.offset);
    const got: bigint[] = [];
    let rounds = 0;
    const matching = (total / 500) * events(500, ['x', 'y', 'z']).filter((e) => e.type !== 'z').length;
    while (got.length < matching) {
      rounds++;
      const stopAt = Math.min(matching, got.length + 500 + Math.floor(Math.random() * 3000));
      const ac = new AbortController();
      const sub = subscription('random', ['svc:x', 'svc:y'], {
        url: `127.0.0.1:${port}`,
        start: { offset: before + 1 },
        maxInFlight: 200,
        signal: ac.signal,
      });
      for await (const e of sub) {
        got.push(e.offset);
        // Leave some unacked before a break: they must come again, once.
        if (got.length < stopAt - 20 || got.length === matching) e.ack();
        if (got.length >= stopAt) {
          if (rounds % 2) ac.abort();
          else break;
        }
      }
      // After an abort the iteration ends at once; close() resolves when the hub has the last ack.
      await sub.close();
      // Unacked ones are delivered again next round: drop what we saw and not acked.
      const acked = m.subs.get('random')?.acked ?? 0n;
      while (got.length > 0 && (got.at(-1) as bigint) > acked) got.pop();
    }
    await producing;
    assert.ok(rounds >= 4, `rounds ${rounds}`);
    const want = expected().slice(0, got.length);
    assert.equal(new Set(got).size, got.length, 'no offset twice');
    assert.deepEqual(got, want, 'every matching offset, in order');
  });

  test('the SDK reconnects when the server restarts and does not yield an event twice', async () => {
    const m = manager as FakeManager;
    const errors: string[] = [];
    const first = m.log.length;
    m.append(events(300));
    const sub2 = subscription('restart', 'svc:*', {
      url: `127.0.0.1:${port}`,
      start: { offset: first + 1 },
      maxInFlight: 50,
      reconnectInitialDelayMs: 20,
      onError: (e) => errors.push(e.code),
    });
    const got: bigint[] = [];
    let restarted = false;
    for await (const e of sub2) {
      got.push(e.offset);
      // Ack only every 7th: after the restart the unacked tail comes again and must be skipped.
      if (got.length % 7 === 0) e.ack();
      if (got.length === 100 && !restarted) {
        restarted = true;
        await server.stop();
        await start();
        m.append(events(300));
      }
      if (got.length === 600) break;
    }
    assert.equal(new Set(got).size, 600, 'nothing yielded twice');
    assert.deepEqual(
      got,
      m.log.slice(first, first + 600).map((e) => e.offset),
    );
    assert.ok(errors.includes('UNAVAILABLE'), `errors ${errors}`);
  });

  test('without a manager Subscribe is UNAVAILABLE and the SDK keeps trying until one serves', async () => {
    const m = manager as FakeManager;
    manager = undefined;
    const errors: HeraldError[] = [];
    const sub = subscription('late', 'svc:*', {
      url: `127.0.0.1:${port}`,
      reconnectInitialDelayMs: 20,
      reconnectMaxDelayMs: 50,
      onError: (e) => errors.push(e),
    });
    const it = sub[Symbol.asyncIterator]();
    const next = it.next();
    await waitFor('UNAVAILABLE reported', () => errors.length > 0, 5000, 10);
    assert.equal(errors[0]?.code, 'UNAVAILABLE');
    assert.match(errors[0]?.message ?? '', /does not serve subscriptions right now/);
    manager = m;
    m.append(events(1));
    await sleep(200);
    m.append(events(1));
    const r = await next;
    assert.equal(r.done, false);
    await sub.close();
  });

  test('permanent failures end the iteration with a clear error: another selector (CONFLICT), a bad selector', async () => {
    const sub = subscription('flow', 'svc:z', { url: `127.0.0.1:${port}` });
    await assert.rejects(
      (async () => {
        for await (const _ of sub) break;
      })(),
      (err: HeraldError) => err.code === 'CONFLICT' && /exists with selector/.test(err.message) && /ALREADY_EXISTS/.test(err.message),
    );
    assert.throws(
      () => subscription('x', 'not a selector'),
      (err: HeraldError) => err.code === 'INVALID_SELECTOR',
    );
    assert.throws(
      () => subscription('bad name!', '*:*'),
      (err: HeraldError) => err.code === 'INVALID_CONFIG',
    );
  });

  test('a second stream on an active subscription waits as a standby and takes over', async () => {
    const m = manager as FakeManager;
    const url = `127.0.0.1:${port}`;
    const a = subscription('standby', 'svc:*', { url, start: 'new' });
    const ai = a[Symbol.asyncIterator]();
    const ap = ai.next();
    await waitFor('a active', () => m.subs.get('standby')?.active !== undefined, 5000, 10);
    const b = subscription('standby', 'svc:*', { url });
    const bi = b[Symbol.asyncIterator]();
    const bp = bi.next();
    await sleep(100);
    m.append(events(2));
    const ea = (await ap).value as SubscriptionEvent;
    ea.ack();
    await a.close();
    const eb = (await bp).value as SubscriptionEvent;
    assert.equal(eb.offset, ea.offset + 1n, 'the standby continues after the acked offset');
    await b.close();
  });
});
