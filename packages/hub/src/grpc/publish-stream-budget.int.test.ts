// The direct publish path's hub-wide bounds, over real parts: PublishStream sessions on a gRPC
// server, Ingest's direct append into PostgreSQL, the flow to herald.events on RabbitMQ, and the
// SDK's hub publisher. Several streams together past the budget of waiting events are held back
// (never more taken than the budget) and every event is answered; with the flow cut off from
// RabbitMQ, the direct path stores up to its bound of unforwarded events, refuses the rest
// UNAVAILABLE with the reason, and takes them once the flow is back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createHubPublisher, type HubPublishReceipt } from '@herald/client';
import { DEFAULT_MAX_EVENT_BYTES, GRPC_SERVICE, type HeraldError, PROTO_LOADER_OPTIONS, PROTO_PATH } from '@herald/core';
import { createTestDatabase, createTestVhost, managementUrl, type TestDatabase, type TestVhost, waitFor } from '@herald/testing';
import { pino } from 'pino';
import { Auth } from '../auth/auth.ts';
import { LogFlow } from '../dispatcher/flow.ts';
import { type DirectContext, directAppend } from '../ingest/direct.ts';
import { openStore, type SqlStore } from '../store/index.ts';
import { PublishBudget } from './publish-budget.ts';
import { PublishSession, publishStreamDecoder } from './publish-stream.ts';
import { principalOfCall, tolerantDecoding } from './requests.ts';
import { grpcServerOptions } from './server.ts';

const logger = pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' });

/** The vhost's connection limit through the management API: 0 keeps every client out, undefined lifts it. */
async function connectionLimit(vhost: string, value: number | undefined): Promise<void> {
  const url = new URL(managementUrl);
  const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  url.username = '';
  url.password = '';
  const res = await fetch(
    new URL(`api/vhost-limits/${encodeURIComponent(vhost)}/max-connections`, url.href.endsWith('/') ? url.href : `${url.href}/`),
    {
      method: value === undefined ? 'DELETE' : 'PUT',
      headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
      body: value === undefined ? null : JSON.stringify({ value }),
    },
  );
  assert.ok(res.ok, `RabbitMQ management answered ${res.status}: ${await res.text()}`);
}

describe('PublishStream budgets across streams (gRPC, PostgreSQL, RabbitMQ, SDK)', { timeout: 120_000 }, () => {
  const MAX_BYTES = 128 * 1024;
  const MAX_EVENTS = 400;
  const MAX_UNFORWARDED = 300;
  let db: TestDatabase;
  let vhost: TestVhost;
  let store: SqlStore;
  let flow: LogFlow;
  let server: grpc.Server;
  let url = '';
  const budget = new PublishBudget({ maxBytes: MAX_BYTES, maxEvents: MAX_EVENTS });
  /** Events the direct path stored that the flow has not out yet. */
  const unforwarded = { events: 0 };

  before(async () => {
    [db, vhost] = await Promise.all([createTestDatabase('pbudget'), createTestVhost('pbudget')]);
    store = await openStore({ url: db.url });
    await store.migrate();
    assert.ok(await store.acquireWriterLease());
    flow = new LogFlow({ amqpUrl: vhost.url, store, logger });
    await flow.start();
    await flow.moveTo(0n); // forwarding from the start of the log, as router mode sets it up
    // Ingest's direct path as Ingest.append() runs it: one serial line, the flow as its outlet.
    let line: Promise<unknown> = Promise.resolve();
    const direct: DirectContext = {
      store,
      hooks: { refused: () => undefined, appended: () => undefined },
      outlet: flow,
      check: () => undefined,
      serially: (fn) => {
        const run = line.then(fn, fn);
        line = run.catch(() => undefined);
        return run;
      },
      storeAnswered: () => undefined,
      maxUnforwarded: MAX_UNFORWARDED,
      unforwarded,
    };
    const auth = new Auth({ enabled: false });
    const ctx = {
      append: (events: Parameters<typeof directAppend>[1], userId: string | undefined) => directAppend(direct, events, userId),
      auth,
      logger,
      maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
      budget,
    };
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const service = def[GRPC_SERVICE] as grpc.ServiceDefinition;
    server = new grpc.Server(grpcServerOptions(DEFAULT_MAX_EVENT_BYTES));
    const decoders = {
      PublishStream: publishStreamDecoder((service.Publish as grpc.MethodDefinition<unknown, unknown>).requestDeserialize),
    };
    const publishStream = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      principalOfCall(auth, call).then(
        (principal) => new PublishSession(call as never, ctx, principal, () => undefined),
        (err: unknown) => call.emit('error', err),
      );
    };
    server.addService(tolerantDecoding(service, decoders), { publishStream } as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    url = `127.0.0.1:${port}`;
  });
  after(async () => {
    if (vhost) await connectionLimit(vhost.name, undefined).catch(() => undefined);
    server?.forceShutdown();
    await flow?.stop();
    await store?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('streams that together pass the budget are held back, never past it, and every event is answered in order', async () => {
    const STREAMS = 4;
    const PER_STREAM = 1500;
    const body = 'x'.repeat(1024);
    const publishers = Array.from({ length: STREAMS }, () => createHubPublisher({ sender: 'billing', url }));
    let sampledBytes = 0;
    const sampler = setInterval(() => {
      sampledBytes = Math.max(sampledBytes, budget.stats().bytes);
    }, 1);
    const receipts = await Promise.all(
      publishers.map((p, s) => Promise.all(Array.from({ length: PER_STREAM }, (_, i) => p.publish('budget.event', { s, i, body })))),
    );
    clearInterval(sampler);
    await Promise.all(publishers.map((p) => p.close()));
    const stats = budget.stats();
    assert.ok(stats.held > 0, `the streams had to wait for room (${JSON.stringify(stats)})`);
    assert.ok(stats.peakBytes <= MAX_BYTES, `at most ${MAX_BYTES} bytes taken at once, saw ${stats.peakBytes}`);
    assert.ok(stats.peakEvents <= MAX_EVENTS, `at most ${MAX_EVENTS} events taken at once, saw ${stats.peakEvents}`);
    assert.ok(sampledBytes <= MAX_BYTES, `sampled ${sampledBytes} bytes`);
    assert.ok(stats.peakBytes > MAX_BYTES / 2, `the budget was used (${stats.peakBytes} bytes at most)`);
    assert.deepEqual(
      { bytes: stats.bytes, events: stats.events, waiting: stats.waiting },
      { bytes: 0, events: 0, waiting: 0 },
      'all given back',
    );
    for (const [s, list] of receipts.entries()) {
      assert.ok(
        list.every((r) => r.offset !== undefined && !r.duplicate),
        `stream ${s}: each event stored`,
      );
      const offsets = list.map((r) => r.offset as bigint);
      assert.ok(
        offsets.every((o, i) => i === 0 || o > (offsets[i - 1] as bigint)),
        `stream ${s}: in publish order in the log`,
      );
    }
    assert.equal(await store.headOffset(), BigInt(STREAMS * PER_STREAM), 'stored once each');
    await waitFor('the flow has them out', () => unforwarded.events === 0 && flow.horizon() === BigInt(STREAMS * PER_STREAM), 30_000);
    console.log(`# budget: ${JSON.stringify(stats)}, sampled at most ${sampledBytes} bytes`);
  });

  test('with the flow cut off from RabbitMQ, appends past the bound are refused UNAVAILABLE with the reason, and stored once it is back', async () => {
    const before = (await store.headOffset()) ?? 0n;
    await connectionLimit(vhost.name, 0);
    // The management API lists a connection some time after it opened: drop until the flow lost it.
    await waitFor(
      'the flow lost RabbitMQ',
      async () => {
        await vhost.dropConnections();
        return !flow.isConnected();
      },
      20_000,
      200,
    );
    const errors: HeraldError[] = [];
    const publisher = createHubPublisher({
      sender: 'billing',
      url,
      reconnectInitialDelayMs: 20,
      reconnectMaxDelayMs: 200,
      onError: (e) => errors.push(e as HeraldError),
    });
    const N = 1000;
    const all: Promise<HubPublishReceipt>[] = Array.from({ length: N }, (_, i) => publisher.publish('budget.down', { i }));
    const refusals = () => errors.filter((e) => e.code === 'UNAVAILABLE' && /HERALD_PUBLISH_MAX_UNFORWARDED/.test(e.message));
    await waitFor('refused, then sent again and refused again', () => refusals().length >= 3, 30_000, 20);
    const stored = ((await store.headOffset()) ?? 0n) - before;
    assert.equal(stored, BigInt(MAX_UNFORWARDED), 'stored up to the bound while nothing goes out');
    assert.equal(unforwarded.events, MAX_UNFORWARDED);
    assert.match(
      (refusals()[0] as HeraldError).message,
      new RegExp(
        `${MAX_UNFORWARDED} events stored through the direct path are not out on herald.events yet .*at most ${MAX_UNFORWARDED}, HERALD_PUBLISH_MAX_UNFORWARDED.*try again shortly`,
      ),
    );
    await connectionLimit(vhost.name, undefined);
    const receipts = await Promise.all(all);
    await publisher.close();
    assert.ok(
      receipts.every((r) => r.offset !== undefined),
      'every publish stored in the end',
    );
    const offsets = receipts.map((r) => r.offset as bigint);
    assert.equal(new Set(offsets).size, N, 'each once');
    assert.ok(
      offsets.every((o, i) => i === 0 || o > (offsets[i - 1] as bigint)),
      'in publish order in the log',
    );
    assert.equal(await store.headOffset(), before + BigInt(N), 'nothing stored twice');
    await waitFor('the flow caught up', () => unforwarded.events === 0 && flow.horizon() === before + BigInt(N), 30_000);
    console.log(`# unforwarded bound: ${refusals().length} refusals while RabbitMQ was out of reach`);
  });
});
